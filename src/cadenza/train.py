"""One trainer for every model: the loop you would write by hand, written once.

The training split becomes one stream (tokens, frames or notes, see `cadenza.data`); each
epoch cuts it into shuffled windows of `seq_len` + 1 and asks the model family for the loss.
Around that: the optimizer (Adam, SGD or AdaGrad, as paper 002 compares), gradient-norm
clipping, the learning-rate schedule (annealing on a valid-loss plateau, or paper 002's
triangular cycle), early stopping, fixed seeds. On a GPU it runs in CUDA with bf16 autocast;
otherwise on the CPU. Each epoch appends a row to a CSV log (for `dvc plots`), and every
improvement on the valid loss rewrites the checkpoint atomically, so a killed run leaves the
last good one; beside it, `<ckpt>.resume.pt` holds the whole training state after each epoch,
so a re-run after a kill continues where it stopped and ends with the same weights as an
uninterrupted run. Adversarial families bring their own update (`train_step`).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import logging
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cadenza.checkpoint import load_data, save_checkpoint, save_data, verify_content
from cadenza.config import ModelParams, TrainParams
from cadenza.data import cap_units, chosen_sources, load_units, make_info, to_stream
from cadenza.io import atomic_path
from cadenza.models import FAMILIES

log = logging.getLogger(__name__)

LOG_FIELDS = [
    "epoch",
    "step",
    "train_loss",
    "valid_loss",
    "lr",
    "seconds",
    "units_per_s",
    "valid_seconds",
]
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    name: str, mp: ModelParams, prepared: Path, ckpt_path: Path, log_csv: Path, seed: int
) -> dict:
    """Train model `name`; write its best checkpoint and per-epoch log; return a summary."""
    seed_everything(seed)
    device = pick_device()
    family, cfg = FAMILIES[mp.family], mp.train
    sources, fallback = chosen_sources(prepared, mp.prefer_sources)
    if fallback:
        log.warning(
            "%s: none of its preferred sources (%s) is in the prepared data; "
            "training on all of it instead: %s",
            name,
            ", ".join(mp.prefer_sources),
            ", ".join(sources),
        )
    train_units = load_units(prepared, "train", mp, seed)
    info = make_info(train_units, mp)
    train_stream = to_stream(train_units, info)
    valid_units = load_units(prepared, "valid", mp, seed)
    valid_stream = to_stream(cap_units(valid_units, cfg.max_valid_units, cfg.seq_len + 1), info)
    log.info(
        "%s (%s) on %s: %d train / %d valid %s%s, device %s",
        name,
        mp.family,
        ", ".join(sources),
        len(train_stream),
        len(valid_stream),
        family.KIND,
        " (capped)" if cfg.max_valid_units else "",
        device,
    )
    if cfg.epochs and len(train_stream) <= cfg.seq_len:
        raise ValueError(
            f"{name}: the training split gives {len(train_stream)} {family.KIND}, "
            f"less than one window (train.seq_len + 1 = {cfg.seq_len + 1}); "
            "add data or lower seq_len"
        )
    fingerprint = data_fingerprint(train_stream, valid_stream, info)
    model = family.build(mp.net, info).to(device)
    checkpoint = {"name": name, "params": mp, "info": info, "model": model, "seed": seed}
    # the compiled wrapper shares its weights with `model`, which is what gets saved
    fast = torch.compile(model) if cfg.compile and device == "cuda" else model
    if cfg.epochs == 0:  # a baseline that is not trained (unigram, untrained)
        save_checkpoint(ckpt_path, **checkpoint, epoch=0, step=0, valid_loss=float("nan"))
        _write_log(log_csv, [])
        return {"epochs": 0, "steps": 0}

    custom_step = getattr(family, "train_step", None)  # GANs update two networks
    optimizers = (
        family.make_optimizers(model, cfg)
        if custom_step
        else [OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr)]
    )
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizers[0], factor=cfg.plateau_factor, patience=0
    )
    early_stop = getattr(family, "EARLY_STOP", True)
    generator = torch.Generator().manual_seed(seed)
    progress = {"epoch": 0, "step": 0, "best": float("inf"), "stale": 0, "rows": []}
    resume_path = ckpt_path.with_name(ckpt_path.stem + ".resume.pt")
    if resume_path.exists():  # a killed run left its last finished epoch: go on from there
        progress = _resume(resume_path, mp, fingerprint, model, optimizers, plateau, generator)
    best, stale, step, rows = (progress[k] for k in ("best", "stale", "step", "rows"))
    for epoch in range(progress["epoch"] + 1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        losses, n_units = [], 0
        # batches are cut lazily: only the capped ones are ever built (on MAESTRO's frames,
        # the whole epoch's windows as floats took 5 GB, for 40 batches used)
        n_batches = epoch_batches(len(train_stream), cfg)
        batches = itertools.islice(
            windows(train_stream, cfg.seq_len, cfg.batch_size, generator), n_batches
        )
        for x, y in tqdm(
            batches, total=n_batches, desc=f"train {name} epoch {epoch}", unit="batch", leave=False
        ):
            x, y = x.to(device), y.to(device)
            if cfg.schedule == "cyclic":
                _set_lr(optimizers[0], cyclic_lr(step, cfg))
            if custom_step:
                losses.append(custom_step(fast, x, y, optimizers))
            else:
                losses.append(_supervised_step(family, fast, x, y, optimizers[0], cfg, device))
            n_units += y.shape[0] * y.shape[1]
            step += 1
        train_loss = float(np.mean(losses)) if losses else float("nan")
        seconds = time.perf_counter() - start  # training only: the valid pass is not in it
        valid_start = time.perf_counter()
        valid_loss = (
            evaluate_loss(family, model, valid_stream, cfg, device, info)
            if len(valid_stream) > cfg.seq_len
            else train_loss
        )
        valid_seconds = time.perf_counter() - valid_start
        rows.append(
            {
                "epoch": epoch,
                "step": step,
                "train_loss": round(train_loss, 5),
                "valid_loss": round(valid_loss, 5),
                "lr": optimizers[0].param_groups[0]["lr"],
                "seconds": round(seconds, 2),
                "units_per_s": round(n_units / seconds, 1),
                "valid_seconds": round(valid_seconds, 2),
            }
        )
        _write_log(log_csv, rows)
        log.info(
            "%s epoch %d: train %.4f valid %.4f lr %.2g; training %.1f s (%.0f %s/s, "
            "%.1f steps/s), valid pass %.1f s",
            name,
            epoch,
            train_loss,
            valid_loss,
            rows[-1]["lr"],
            seconds,
            n_units / seconds,
            family.KIND,
            n_batches / seconds,
            valid_seconds,
        )
        if cfg.schedule == "plateau" and not custom_step:
            plateau.step(valid_loss)
        if valid_loss < best or not early_stop:
            best, stale = min(best, valid_loss), 0
            save_checkpoint(ckpt_path, **checkpoint, epoch=epoch, step=step, valid_loss=valid_loss)
        else:
            stale += 1
        _save_resume(
            resume_path,
            mp,
            fingerprint,
            model,
            optimizers,
            plateau,
            generator,
            {"epoch": epoch, "step": step, "best": best, "stale": stale, "rows": rows},
        )
        if cfg.patience and stale >= cfg.patience:
            log.info("%s: early stop after epoch %d (best valid %.4f)", name, epoch, best)
            break
    resume_path.unlink(missing_ok=True)  # finished: nothing to resume
    return {"best_valid_loss": best, "epochs": len(rows), "steps": step}


def data_fingerprint(train_stream: torch.Tensor, valid_stream: torch.Tensor, info: dict) -> str:
    """sha256 of exactly what the model trains and validates on (and its vocabulary).

    Why: a resume file must only continue the run that wrote it. Equal params are not
    enough: after a `limit` or source change, the same shapes would silently resume on other
    data, and a new vocabulary size crashed inside `load_state_dict`.
    """
    digest = hashlib.sha256(repr(sorted(info.items())).encode())
    for stream in (train_stream, valid_stream):
        digest.update(str((stream.dtype, tuple(stream.shape))).encode())
        digest.update(memoryview(stream.contiguous().numpy()).cast("B"))
    return digest.hexdigest()


RESUME_FORMAT = "cadenza-resume/2"
RESUME_HINT = "; delete it to train from the start"


def _save_resume(
    path: Path,
    mp: ModelParams,
    fingerprint: str,
    model,
    optimizers,
    plateau,
    generator,
    progress: dict,
) -> None:
    """Everything a resumed run needs to continue exactly as an uninterrupted one would:
    weights, optimizer and scheduler state, every random generator (the CUDA ones too, on a
    GPU), the log so far, and the params and data fingerprint it belongs to; sealed with a
    sha256 of its content, like a checkpoint."""
    payload = {
        "format": RESUME_FORMAT,
        "params": asdict(mp),
        "data": fingerprint,
        "model": model.state_dict(),
        "optimizers": [opt.state_dict() for opt in optimizers],
        "plateau": plateau.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        **progress,
    }
    if torch.cuda.is_available():
        payload["cuda_rng"] = torch.cuda.get_rng_state_all()
    save_data(path, payload)


def _resume(
    path: Path, mp: ModelParams, fingerprint: str, model, optimizers, plateau, generator
) -> dict:
    """The progress saved in `path`, loaded into the live objects; a file left by a run on
    other params or other data is discarded (one log line) and training starts afresh.

    A damaged file (its content sha256 does not match) is refused, not discarded: starting
    afresh would overwrite the killed run's best checkpoint at its first epoch, and hide a
    failing disk; refused, both files stay for the user to judge."""
    payload = load_data(path, "resume file", None, RESUME_HINT)
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise ValueError(
            f"{path}: not a {RESUME_FORMAT} resume file (a foreign one, or an "
            f"older Cadenza's, which carries no sha256 of its content)"
            f"{RESUME_HINT}"
        )
    verify_content(payload, path, "resume file", RESUME_HINT)
    mismatch = (
        "other params"
        if payload.get("params") != asdict(mp)
        else "other prepared data"
        if payload.get("data") != fingerprint
        else ""
    )
    if mismatch:
        log.warning(
            "%s: left by a run on %s; discarding it and training from the start", path, mismatch
        )
        path.unlink()
        return {"epoch": 0, "step": 0, "best": float("inf"), "stale": 0, "rows": []}
    log.info("%s: resuming after epoch %d", path, payload["epoch"])
    model.load_state_dict(payload["model"])
    for opt, state in zip(optimizers, payload["optimizers"], strict=True):
        opt.load_state_dict(state)
    plateau.load_state_dict(payload["plateau"])
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    _restore_cuda_rng(payload.get("cuda_rng"), path)
    return {k: payload[k] for k in ("epoch", "step", "best", "stale", "rows")}


def _restore_cuda_rng(states: list[torch.Tensor] | None, path: Path) -> None:
    """Put back the CUDA generators of the run that saved `path`, when this machine has as
    many GPUs; otherwise say that the resumed run cannot repeat an uninterrupted one bit for
    bit (dropout draws on the GPU differ), and go on. A file from a CPU run has none."""
    if states is None:
        return
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have != len(states):
        log.warning(
            "%s: holds the random state of %d GPU(s), this machine has %d: not "
            "restored, so this run will not repeat an uninterrupted one bit for bit",
            path,
            len(states),
            have,
        )
        return
    torch.cuda.set_rng_state_all(states)


def _supervised_step(family, model, x, y, optimizer, cfg: TrainParams, device: str) -> float:
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
        loss = family.loss(model, x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    optimizer.step()
    return loss.item()


def cyclic_lr(step: int, cfg: TrainParams) -> float:
    """Paper 002's cyclical learning rate (Smith 2017, triangular): from `lr_min` up to `lr`
    over `cycle_steps` steps, back down over as many, and again."""
    phase = (step % (2 * cfg.cycle_steps)) / cfg.cycle_steps  # 0..2
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 - abs(phase - 1))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def windows(
    stream: torch.Tensor, seq_len: int, batch_size: int, generator: torch.Generator | None = None
):
    """(x, y) batches of windows of the stream, y = x shifted by one step; shuffled when a
    generator is given. Works for any stream whose first axis is time; byte-sized frames
    come out as float."""
    n_windows = (len(stream) - 1) // seq_len
    order = (
        torch.randperm(n_windows, generator=generator)
        if generator is not None
        else torch.arange(n_windows)
    )
    as_float = stream.dtype == torch.uint8
    for i in range(0, n_windows, batch_size):
        starts = (order[i : i + batch_size] * seq_len).tolist()
        x = torch.stack([stream[s : s + seq_len] for s in starts])
        y = torch.stack([stream[s + 1 : s + seq_len + 1] for s in starts])
        yield (x.float(), y.float()) if as_float else (x, y)


def epoch_batches(stream_len: int, cfg: TrainParams) -> int:
    """Batches in one training epoch: every window of the stream once, up to the cap."""
    n = -(-((stream_len - 1) // cfg.seq_len) // cfg.batch_size)
    return min(n, cfg.max_batches) if cfg.max_batches else n


def eval_batch_size(cfg: TrainParams, info: dict) -> int:
    """Windows per evaluation batch: without gradients, a bigger batch than training's (up
    to 8x: activations grow with it too, and a GAN's images are large), as long as the
    output (windows x seq_len x vocabulary or 128 pitches, float32) stays under 256 MB."""
    width = max(len(info.get("vocab", ())), 128)
    fits = EVAL_OUTPUT_FLOATS // (cfg.seq_len * width)
    return max(cfg.batch_size, min(8 * cfg.batch_size, fits))


EVAL_OUTPUT_FLOATS = 1 << 26


@torch.inference_mode()
def evaluate_loss(
    family,
    model: torch.nn.Module,
    stream: torch.Tensor,
    cfg: TrainParams,
    device: str,
    info: dict | None = None,
) -> float:
    """Mean loss over the stream's windows, in order (each window starts fresh)."""
    model.eval()
    total, count = 0.0, 0
    for x, y in windows(stream, cfg.seq_len, eval_batch_size(cfg, info or {})):
        total += family.loss(model, x.to(device), y.to(device)).item() * len(x)
        count += len(x)
    return total / max(count, 1)


@torch.inference_mode()
def stream_logits(
    model: torch.nn.Module, ids: torch.Tensor, seq_len: int, device: str, rows: int = 1
):
    """Teacher-forced (logits, targets) over a whole token stream, flattened per window.

    The stream is cut into up to `rows` contiguous parts scored side by side as one batch,
    each in windows of `seq_len` that carry the recurrent state (a Transformer has none:
    each window is its own context). Parts are kept at least 16 windows long, so that little
    context is lost at their starts; the tail is padded with id 0 (`<pad>`), which scoring
    ignores.
    """
    model.eval()
    n = len(ids) - 1
    if n < 1:
        return
    rows = max(1, min(rows, n // (16 * seq_len)))
    length = -(-n // rows)
    x = torch.zeros(rows * length, dtype=ids.dtype)
    y = torch.zeros(rows * length, dtype=ids.dtype)
    x[:n], y[:n] = ids[:-1], ids[1:]
    x, y = x.view(rows, length), y.view(rows, length)
    state = None
    for s in range(0, length, seq_len):
        logits, state = model(x[:, s : s + seq_len].to(device), state)
        yield logits.float().reshape(-1, logits.shape[-1]), y[:, s : s + seq_len].reshape(-1)


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
