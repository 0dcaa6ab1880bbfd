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
uninterrupted run. Adversarial families bring their own update (`train_step`). The windows
and the valid loss come from `cadenza.batches`, which the evaluator shares.

The loop itself is `fit`: the polyphonic benchmark (`cadenza.benchmark`) plugs its own
batches (whole padded pieces), loss and valid score into it (`Loop`).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
from tqdm import tqdm

from cadenza.batches import epoch_batches, evaluate_loss, pick_device, windows
from cadenza.checkpoint import load_data, save_checkpoint, save_data, verify_content
from cadenza.config import ModelParams, TrainParams, saved_model_params
from cadenza.data import cap_units, chosen_sources, load_units, make_info, to_stream
from cadenza.io import atomic_path
from cadenza.models import SPECS, Adversarial, load_family

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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Progress:
    """Where a training run stands after an epoch: what a resumed run starts from."""

    epoch: int = 0
    step: int = 0
    best: float = math.inf  # the best monitored loss so far (`Loop.monitor`)
    stale: int = 0  # epochs since it improved
    rows: list[dict] = field(default_factory=list)  # the log so far, one row per epoch


Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class Loop:
    """What a trainer plugs into `fit`: its data, its update and its valid score.

    `batches` gives one epoch's batches (`n_batches` of them) and is called once per epoch;
    `step` makes one update on a batch and returns (loss, units scored); `validate` takes
    the epoch's mean train loss and returns the valid score that the plateau schedule
    watches, and early stopping too unless `monitor` is "train": then the epoch's mean
    train loss decides (Keras' `monitor='loss'`, which paper 004's tutorial used). `unit`
    names a unit in the log (tokens, frames, ...).
    """

    batches: Callable[[], Iterable[Batch]]
    n_batches: int
    step: Callable[[Batch], tuple[float, int]]
    validate: Callable[[float], float]
    unit: str
    schedule: Literal["plateau", "cyclic", "constant"] = "constant"
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None  # for "plateau"
    early_stop: bool = True  # False: every epoch counts as an improvement (the last is kept)
    monitor: Literal["valid", "train"] = "valid"  # the loss that early stopping watches


def fit(
    label: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainParams,
    loop: Loop,
    progress: Progress,
    on_epoch: Callable[[Progress, float, bool], None],
) -> Progress:
    """The training loop, shared by the `train` stage and the polyphonic benchmark.

    From the epoch after `progress.epoch` to `cfg.epochs`: the batches (behind a progress
    bar), the learning rate of `optimizer` (the one that is scheduled and logged: cyclic per
    step, or annealed on a valid plateau), the valid score, early stopping after
    `cfg.patience` epochs without improvement. After each epoch, `on_epoch(progress,
    valid_score, improved)` lets the caller keep the best weights, write its log and save
    what a resumed run needs; it is called before the stop decision, so the last epoch is
    saved too. Returns the final progress.
    """
    for epoch in range(progress.epoch + 1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        losses, n_units, step = [], 0, progress.step
        for batch in tqdm(
            loop.batches(),
            total=loop.n_batches,
            desc=f"train {label} epoch {epoch}",
            unit="batch",
            leave=False,
        ):
            if loop.schedule == "cyclic":
                _set_lr(optimizer, cyclic_lr(step, cfg))
            loss, units = loop.step(batch)
            losses.append(loss)
            n_units += units
            step += 1
        train_loss = float(np.mean(losses)) if losses else float("nan")
        seconds = time.perf_counter() - start  # training only: the valid pass is not in it
        valid_start = time.perf_counter()
        valid_loss = loop.validate(train_loss)
        valid_seconds = time.perf_counter() - valid_start
        row = {
            "epoch": epoch,
            "step": step,
            "train_loss": round(train_loss, 5),
            "valid_loss": round(valid_loss, 5),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 2),
            "units_per_s": round(n_units / seconds, 1),
            "valid_seconds": round(valid_seconds, 2),
        }
        log.info(
            "%s epoch %d: train %.4f valid %.4f lr %.2g; training %.1f s (%.0f %s/s, "
            "%.1f steps/s), valid pass %.1f s",
            label,
            epoch,
            train_loss,
            valid_loss,
            row["lr"],
            seconds,
            n_units / seconds,
            loop.unit,
            loop.n_batches / seconds,
            valid_seconds,
        )
        if loop.schedule == "plateau" and loop.plateau is not None:
            loop.plateau.step(valid_loss)
        watched = train_loss if loop.monitor == "train" else valid_loss
        improved = watched < progress.best or not loop.early_stop
        progress = Progress(
            epoch=epoch,
            step=step,
            best=min(progress.best, watched) if improved else progress.best,
            stale=0 if improved else progress.stale + 1,
            rows=[*progress.rows, row],
        )
        on_epoch(progress, valid_loss, improved)
        if cfg.patience and progress.stale >= cfg.patience:
            log.info(
                "%s: early stop after epoch %d (best %s loss %.4f)",
                label,
                epoch,
                loop.monitor,
                progress.best,
            )
            break
    return progress


def train(
    name: str, mp: ModelParams, prepared: Path, ckpt_path: Path, log_csv: Path, seed: int
) -> dict:
    """Train model `name`; write its best checkpoint and per-epoch log; return a summary."""
    seed_everything(seed)
    device = pick_device()
    spec, family, cfg = SPECS[mp.family], load_family(mp.family), mp.train
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
        spec.kind,
        " (capped)" if cfg.max_valid_units else "",
        device,
    )
    if cfg.epochs and len(train_stream) <= cfg.seq_len:
        raise ValueError(
            f"{name}: the training split gives {len(train_stream)} {spec.kind}, "
            f"less than one window (train.seq_len + 1 = {cfg.seq_len + 1}); "
            "add data or lower seq_len"
        )
    fingerprint = data_fingerprint(train_stream, valid_stream, info)
    model = family.build(mp.net, info).to(device)
    checkpoint = partial(
        save_checkpoint, ckpt_path, name=name, params=mp, info=info, model=model, seed=seed
    )
    # the compiled wrapper shares its weights with `model`, which is what gets saved
    # (torch's stubs type the compiled wrapper as a plain callable; it is a Module)
    fast = (
        cast(torch.nn.Module, torch.compile(model)) if cfg.compile and device == "cuda" else model
    )
    if cfg.epochs == 0:  # a baseline that is not trained (unigram, untrained)
        checkpoint(epoch=0, step=0, valid_loss=float("nan"))
        _write_log(log_csv, [])
        return {"epochs": 0, "steps": 0, "resumed_seconds": 0.0}

    adversarial = cast(Adversarial, family) if spec.adversarial else None  # GANs: two networks
    optimizers = (
        adversarial.make_optimizers(model, cfg)
        if adversarial
        else [OPTIMIZERS[cfg.optimizer](model.parameters(), lr=cfg.lr)]
    )
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizers[0], factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    generator = torch.Generator().manual_seed(seed)
    progress = Progress()
    resume_path = ckpt_path.with_name(ckpt_path.stem + ".resume.pt")
    if resume_path.exists():  # a killed run left its last finished epoch: go on from there
        progress = _resume(resume_path, mp, fingerprint, model, optimizers, plateau, generator)
    # the killed processes' share of the run, as their epochs logged it: a caller timing
    # this call adds it, else a resumed run would look as fast as its last stretch
    resumed_seconds = sum(row["seconds"] + row["valid_seconds"] for row in progress.rows)

    def step(batch: Batch) -> tuple[float, int]:
        x, y = (t.to(device) for t in batch)
        if adversarial:
            loss = adversarial.train_step(fast, x, y, optimizers)
        else:
            loss = supervised_step(
                lambda: family.loss(fast, x, y), fast, optimizers[0], cfg.clip, device == "cuda"
            )
        return loss, y.shape[0] * (1 if cfg.targets == "last" else y.shape[1])  # targets

    def validate(train_loss: float) -> float:
        if len(valid_stream) <= cfg.seq_len:  # too short for one window
            return train_loss
        return evaluate_loss(family, model, valid_stream, cfg, device, info)

    def on_epoch(progress: Progress, valid_loss: float, improved: bool) -> None:
        _write_log(log_csv, progress.rows)
        if improved:
            checkpoint(epoch=progress.epoch, step=progress.step, valid_loss=valid_loss)
        _save_resume(resume_path, mp, fingerprint, model, optimizers, plateau, generator, progress)

    # batches are cut lazily: only the capped ones are ever built (on MAESTRO's frames, the
    # whole epoch's windows as floats took 5 GB, for 40 batches used)
    n_batches = epoch_batches(len(train_stream), cfg)
    loop = Loop(
        batches=lambda: itertools.islice(
            windows(
                train_stream,
                cfg.seq_len,
                cfg.batch_size,
                generator,
                cfg.stride,
                last_only=cfg.targets == "last",
            ),
            n_batches,
        ),
        n_batches=n_batches,
        step=step,
        validate=validate,
        unit=spec.kind,
        # adversarial losses do not measure quality: no annealing on their plateau, and the
        # last epoch is kept
        schedule="constant" if adversarial and cfg.schedule == "plateau" else cfg.schedule,
        plateau=plateau,
        early_stop=not spec.adversarial,
        monitor=cfg.monitor,
    )
    progress = fit(name, model, optimizers[0], cfg, loop, progress, on_epoch)
    resume_path.unlink(missing_ok=True)  # finished: nothing to resume
    return {
        "best_loss": progress.best,
        "epochs": len(progress.rows),
        "steps": progress.step,
        "resumed_seconds": resumed_seconds,
    }


def data_fingerprint(train_stream: torch.Tensor, valid_stream: torch.Tensor, info: dict) -> str:
    """sha256 of exactly what the model trains and validates on (and its vocabulary).

    Why: a resume file must only continue the run that wrote it. Equal params are not
    enough: after a `limit` or source change, the same shapes would silently resume on other
    data, and a new vocabulary size crashed inside `load_state_dict`.
    """
    digest = hashlib.sha256(repr(sorted(info.items())).encode())
    for stream in (train_stream, valid_stream):
        digest.update(str((stream.dtype, tuple(stream.shape))).encode())
        digest.update(stream.contiguous().numpy().data.cast("B"))
    return digest.hexdigest()


RESUME_FORMAT = "cadenza-resume/2"
RESUME_HINT = "; delete it to train from the start"


def _save_resume(
    path: Path,
    mp: ModelParams,
    fingerprint: str,
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau,
    generator: torch.Generator,
    progress: Progress,
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
        **asdict(progress),
    }
    if torch.cuda.is_available():
        payload["cuda_rng"] = torch.cuda.get_rng_state_all()
    save_data(path, payload)


def _resume(
    path: Path,
    mp: ModelParams,
    fingerprint: str,
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau,
    generator: torch.Generator,
) -> Progress:
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
        if saved_model_params(payload.get("params")) != asdict(mp)
        else "other prepared data"
        if payload.get("data") != fingerprint
        else ""
    )
    if mismatch:
        log.warning(
            "%s: left by a run on %s; discarding it and training from the start", path, mismatch
        )
        path.unlink()
        return Progress()
    log.info("%s: resuming after epoch %d", path, payload["epoch"])
    model.load_state_dict(payload["model"])
    for opt, state in zip(optimizers, payload["optimizers"], strict=True):
        opt.load_state_dict(state)
    plateau.load_state_dict(payload["plateau"])
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    _restore_cuda_rng(payload.get("cuda_rng"), path)
    return Progress(**{f.name: payload[f.name] for f in fields(Progress)})


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


def supervised_step(
    loss_fn: Callable[[], torch.Tensor],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    clip: float,
    autocast: bool,
) -> float:
    """One gradient step on the loss `loss_fn` computes (in bf16 autocast on a GPU where
    `autocast`), its gradient norm clipped to `clip` (0 = no clipping)."""
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
        loss = loss_fn()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
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


def _write_log(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
