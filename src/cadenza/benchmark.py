"""`cadenza benchmark bl`: the polyphonic benchmark of Boulanger-Lewandowski, Bengio &
Vincent (ICML 2012), reproduced as published.

The data are their four pickles (JSB chorales, Nottingham, MuseData, Piano-midi.de): fixed
train / valid / test splits of pieces, each a list of time steps holding the sounding MIDI
pitches in 21..108 (88 keys), already transposed. A model reads a piece frame by frame and
gives the probability of each next frame; the score is the test frame-level NLL in nats
(-sum over the 88 pitches of y log p + (1 - y) log(1 - p), per frame, frame t predicted from
frames < t, the first from nothing) and Bay et al.'s frame accuracy. Training early-stops on
the valid NLL. Everything is fixed by the seed; run time and hardware go into the result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from cadenza.batches import device_label, pick_device
from cadenza.checkpoint import load_data, save_data, verify_content
from cadenza.config import SEED_LIMIT, ModelParams, SourceParams, saved_model_params
from cadenza.io import write_json
from cadenza.metrics.likelihood import frame_accuracy, frame_nll
from cadenza.models import SPECS, PitchAutoregressiveModel, load_family
from cadenza.sources import bl_pickle
from cadenza.sources.layouts import download
from cadenza.sources.registry import SOURCES
from cadenza.train import Loop, Progress, fit, seed_everything, supervised_step

log = logging.getLogger(__name__)

LOW, KEYS = 21, 88  # MIDI 21..108
EVAL_FRAMES = 32_000  # padded frames per scoring batch: JSB's and Nottingham's batches of 16
RESUME_FORMAT = "cadenza-bench-resume/2"
SPLITS = ("train", "valid", "test")
DATASETS = {
    "jsb": "bl_jsb",
    "nottingham": "bl_nottingham",
    "musedata": "bl_musedata",
    "piano_midi_de": "bl_piano_midi",
}  # -> the source registry
# test NLL per frame, from ../shared/reference/benchmarks.md (Bai et al. 2018, Table 1;
# Boulanger-Lewandowski et al. 2012)
PUBLISHED = {
    "RNN (Bai et al. 2018)": {"jsb": 8.91, "nottingham": 4.05},
    "LSTM (Bai et al. 2018)": {"jsb": 8.45, "nottingham": 3.29},
    "GRU (Bai et al. 2018)": {"jsb": 8.43, "nottingham": 3.46},
    "TCN (Bai et al. 2018)": {"jsb": 8.10, "nottingham": 3.07},
    "RNN-RBM (B-L 2012)": {
        "jsb": 6.27,
        "nottingham": 2.39,
        "musedata": 6.01,
        "piano_midi_de": 7.09,
    },
    "RNN-NADE (B-L 2012)": {
        "jsb": 5.56,
        "nottingham": 2.31,
        "musedata": 5.60,
        "piano_midi_de": 7.05,
    },
}


@dataclass(frozen=True)
class Run:
    """One cell of the benchmark with one seed: what one stage of bench/bl/dvc.yaml runs."""

    dataset: str
    model: str
    seed: int


@dataclass(frozen=True)
class BenchmarkParams:
    """`bench/bl/params.yaml` (read by `cadenza.config.load_yaml_as`): where each dataset
    comes from, and the models."""

    datasets: dict[str, SourceParams]  # `url` "" = the registry's address
    models: dict[str, ModelParams]
    # what `dvc repro` runs: one stage per entry (bench@<key>), every one committed
    run: dict[str, Run] = field(default_factory=dict)
    # per model: training batches transposed by up to this many semitones (absent = none)
    transpose: dict[str, int] = field(default_factory=dict)
    # per dataset: train on windows of at most this many frames, cut from the pieces, each
    # from a fresh state (truncated backpropagation: memory and time per step bounded on long
    # pieces such as Piano-midi.de's); absent = whole pieces. Valid and test: whole pieces.
    windows: dict[str, int] = field(default_factory=dict)


def load_bl(path: Path) -> dict[str, list[np.ndarray]]:
    """The pickle's splits as lists of (T, 88) uint8 rolls (column c = MIDI pitch 21 + c).

    Read with the no-code unpickler; a pitch off the 88 keys is refused, not wrapped around.
    """
    data = bl_pickle.load(path, range(LOW, LOW + KEYS))
    out = {}
    for split in SPLITS:
        pieces = []
        for steps in data[split]:
            roll = np.zeros((len(steps), KEYS), dtype=np.uint8)
            for t, pitches in enumerate(steps):
                roll[t, [int(p) - LOW for p in pitches]] = 1
            pieces.append(roll)
        out[split] = pieces
    return out


def batches(pieces: list[np.ndarray], batch_size: int, generator: torch.Generator | None = None):
    """(x, y, mask): y = whole pieces padded to the longest in the batch, x = y delayed by
    one frame (a silent frame first), mask = the real frames."""
    order = (
        torch.randperm(len(pieces), generator=generator).tolist()
        if generator
        else range(len(pieces))
    )
    order = list(order)
    for i in range(0, len(order), batch_size):
        chunk = [pieces[j] for j in order[i : i + batch_size]]
        length = max(len(p) for p in chunk)
        y = torch.zeros(len(chunk), length, KEYS)
        mask = torch.zeros(len(chunk), length, dtype=torch.bool)
        for k, piece in enumerate(chunk):
            y[k, : len(piece)] = torch.from_numpy(piece).float()
            mask[k, : len(piece)] = True
        yield delayed(y), y, mask


def delayed(y: torch.Tensor) -> torch.Tensor:
    """The inputs for targets `y` (B, T, P): y one frame later, a silent frame first."""
    return F.pad(y[:, :-1], (0, 0, 1, 0))


def conditionals(
    model: torch.nn.Module, family: str, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Logits (N, P) of P(y | past) at the N real frames of the batch (`mask`): independent
    per pitch (roll_lstm) or, for the pitch-autoregressive families, of each pitch given the
    pitches below it; either way the frame NLL is their summed BCE. The pitch-wise output
    runs on the real frames only, not on the padding: on Nottingham's batches of 8 random
    pieces, about 1.8 padded frames for every real one."""
    if SPECS[family].pitch_autoregressive:
        joint = cast(PitchAutoregressiveModel, model)
        context, _ = joint.time_context(x)
        return joint.pitch_logits(context[mask], y[mask])
    logits, _ = model(x)
    return logits[mask]


def frames_nll(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over pitches of the BCE, averaged over the frames (N, P): nats per frame."""
    return F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none").sum(-1).mean()


@torch.no_grad()
def score(
    model: torch.nn.Module, family: str, pieces: list[np.ndarray], device: str
) -> dict[str, float]:
    """Frame NLL (nats) and Bay et al.'s accuracy over every frame of `pieces`. The
    accuracy's prediction is p > 0.5 per pitch, or the greedy frame where pitches are
    autoregressive."""
    model.eval()
    probs, predicted, targets = [], [], []
    for x, y, mask in by_length(pieces):
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        logits = conditionals(model, family, x, y, mask)
        probs.append(torch.sigmoid(logits.float()).cpu().numpy())
        targets.append(y[mask].cpu().numpy())
        if SPECS[family].pitch_autoregressive:
            joint = cast(PitchAutoregressiveModel, model)
            context, _ = joint.time_context(x)
            predicted.append(joint.decode(context[mask]).cpu().numpy())
        else:
            predicted.append(probs[-1] > 0.5)
    p, t = np.concatenate(probs), np.concatenate(targets)
    return {
        "nll": frame_nll(p, t),
        "accuracy": frame_accuracy(np.concatenate(predicted), t),
        "frames": len(t),
    }


def transpose(y: torch.Tensor, shift: int) -> torch.Tensor:
    """Frames (..., 88) moved `shift` keys up (down if negative); keys pushed off the
    keyboard are dropped, not wrapped."""
    if shift == 0:
        return y
    out = torch.zeros_like(y)
    if shift > 0:
        out[..., shift:] = y[..., :-shift]
    else:
        out[..., :shift] = y[..., -shift:]
    return out


def run(
    dataset: str,
    data: dict[str, list[np.ndarray]],
    name: str,
    mp: ModelParams,
    seed: int,
    out_json: Path,
    transpose_max: int = 0,
    window: int = 0,
) -> dict:
    """Train on train, early-stop on valid NLL, score the best weights on test.

    The shared trainer's loop (`cadenza.train.fit`) with the benchmark's own data and loss:
    batches of whole pieces padded and masked, the masked frame NLL, Adam (`train.optimizer`
    and `train.monitor` are not read: it always keeps the best valid NLL) at the rate
    `train.schedule` gives: "constant", as published, or "plateau", cut by
    `train.plateau_factor` after `train.plateau_patience` epochs without a better valid NLL.
    With `transpose_max` > 0 each training batch is transposed by a random number of
    semitones in [-transpose_max, transpose_max] (Walder 2016's augmentation); valid and
    test are scored as published, untransposed. With `window` > 0, training reads windows of
    at most that many frames (`cut_windows`).

    After every epoch the whole state is saved beside `out_json` (`<name>.resume.pt`), so a
    run that is killed, or outlives a session, goes on from its last epoch when started
    again with the same arguments; a finished run deletes it."""
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed {seed}: must be in [0, {SEED_LIMIT - 1}]")
    seed_everything(seed)
    device = pick_device()
    model = load_family(mp.family).build(mp.net, {}).to(device)
    cfg = mp.train
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience
    )
    generator = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    best_state: dict[str, torch.Tensor] = {}
    train_pieces = cut_windows(data["train"], window) if window else data["train"]
    resume_path = out_json.with_name(out_json.stem + ".resume.pt")
    run_key = {
        "dataset": dataset,
        "params": asdict(mp),
        "seed": seed,
        "transpose_max": transpose_max,
        "window": window,
    }
    progress, seconds_before = Progress(), 0.0
    if resume_path.exists():
        progress, seconds_before = _resume(
            resume_path, run_key, model, optimizer, plateau, best_state, history, generator
        )
    start = time.perf_counter() - seconds_before

    def train_batches() -> Iterator[tuple[torch.Tensor, ...]]:
        for x, y, mask in batches(train_pieces, cfg.batch_size, generator):
            if transpose_max:
                shift = int(
                    torch.randint(-transpose_max, transpose_max + 1, (1,), generator=generator)
                )
                y = transpose(y, shift)
                x = delayed(y)
            yield x, y, mask

    def step(batch: tuple[torch.Tensor, ...]) -> tuple[float, int]:
        x, y, mask = (t.to(device) for t in batch)
        loss = supervised_step(
            lambda: frames_nll(conditionals(model, mp.family, x, y, mask), y[mask]),
            model,
            optimizer,
            cfg.clip,
            autocast=False,
        )
        return loss, int(mask.sum())

    def on_epoch(progress: Progress, valid: float, improved: bool) -> None:
        history.append({"epoch": progress.epoch, "valid_nll": valid, "lr": progress.rows[-1]["lr"]})
        if improved:
            best_state.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        state = {
            "run": run_key,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "plateau": plateau.state_dict(),
            "best_state": best_state,
            "history": history,
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "seconds": time.perf_counter() - start,
            **asdict(progress),
        }
        save_data(resume_path, {"format": RESUME_FORMAT, **state})

    loop = Loop(
        batches=train_batches,
        n_batches=-(-len(train_pieces) // cfg.batch_size),
        step=step,
        validate=lambda _: _valid_nll(model, mp.family, data["valid"], device),
        unit="frames",
        schedule=cfg.schedule,
        plateau=plateau,
    )
    progress = fit(f"{dataset} {name}", model, optimizer, cfg, loop, progress, on_epoch)
    model.load_state_dict(best_state)
    test = score(model, mp.family, data["test"], device)
    result = {
        "dataset": dataset,
        "model": name,
        "test_nll": test["nll"],
        "test_accuracy": test["accuracy"],
        "test_frames": test["frames"],
        "valid_nll": progress.best,
        "epochs": len(history),
        "seconds": round(time.perf_counter() - start, 1),
        "device": device_label(device),
        "params": asdict(mp),
        "transpose_max": transpose_max,
        "window": window,
        "seed": seed,
        "history": history,
    }
    write_json(out_json, result)
    resume_path.unlink(missing_ok=True)
    log.info(
        "%s %s: test NLL %.3f, accuracy %.3f (%d frames, %.0f s)",
        dataset,
        name,
        test["nll"],
        test["accuracy"],
        test["frames"],
        result["seconds"],
    )
    return result


def cut_windows(pieces: list[np.ndarray], window: int) -> list[np.ndarray]:
    """Each piece cut into consecutive windows of at most `window` frames (the last one
    shorter), in order: every frame is still a target once per epoch."""
    return [p[i : i + window] for p in pieces for i in range(0, len(p), window)]


def by_length(pieces: list[np.ndarray]) -> Iterator[tuple[torch.Tensor, ...]]:
    """Scoring batches of pieces in order of length, so that each is padded little: the
    scores are sums over frames, so the order changes nothing but the time."""
    return batches(sorted(pieces, key=len), eval_batch_size(pieces))


def eval_batch_size(pieces: list[np.ndarray]) -> int:
    """Pieces per scoring batch: 16, fewer where the longest piece would make a padded batch
    of more than `EVAL_FRAMES` frames (Piano-midi.de's pieces run to thousands)."""
    longest = max((len(p) for p in pieces), default=1)
    return max(1, min(16, EVAL_FRAMES // longest))


def _resume(
    path: Path,
    run_key: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau,
    best_state: dict[str, torch.Tensor],
    history: list[dict],
    generator: torch.Generator,
) -> tuple[Progress, float]:
    """The progress and training seconds saved in `path`, loaded into the live objects. A
    file left by another run (dataset, params, seed, transposition or window) is discarded,
    with a log line; a damaged one is refused (ValueError naming it)."""
    hint = "; delete it to train from the start"
    payload = load_data(path, "benchmark resume file", None, hint)
    if not isinstance(payload, dict) or payload.get("format") != RESUME_FORMAT:
        raise ValueError(f"{path}: not a {RESUME_FORMAT} file{hint}")
    verify_content(payload, path, "benchmark resume file", hint)
    saved = payload["run"] | {"params": saved_model_params(payload["run"].get("params"))}
    if saved != run_key:
        log.warning("%s: left by another run; discarding it, training from the start", path)
        path.unlink()
        return Progress(), 0.0
    log.info("%s: resuming after epoch %d", path, payload["epoch"])
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    plateau.load_state_dict(payload["plateau"])
    best_state.update(payload["best_state"])
    history.extend(payload["history"])
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    progress = Progress(**{f.name: payload[f.name] for f in fields(Progress)})
    return progress, float(payload["seconds"])


@torch.no_grad()
def _valid_nll(model: torch.nn.Module, family: str, pieces: list[np.ndarray], device: str) -> float:
    model.eval()
    total, frames = 0.0, 0
    for x, y, mask in by_length(pieces):
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        n = int(mask.sum())
        total += frames_nll(conditionals(model, family, x, y, mask), y[mask]).item() * n
        frames += n
    return total / max(frames, 1)


def dataset_file(dataset: str, params: SourceParams, cache: Path) -> Path:
    """The dataset's pickle through the real downloader: `url` from the params, else
    `CADENZA_MIRROR_BL_<NAME>`, else the registry's address; verified and cached."""
    return download(SOURCES[DATASETS[dataset]], params, cache)


def mean_std(values: list[float]) -> str:
    """The mean over seeds and the sample standard deviation (ddof = 1), as in
    "5.05 ± 0.03 (n = 3)"; the single value and "(n = 1)" where only one seed has run."""
    if len(values) == 1:
        return f"{values[0]:.2f} (n = 1)"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f} (n = {len(values)})"


def results_table(results: list[dict]) -> str:
    """Markdown: our rows (mean ± std over the seeds that ran) under the published ones, then
    each run's epochs, time and hardware."""
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in results)]
    header = "| model | " + " | ".join(datasets) + " | source |"
    lines = [header, "|---|" + "---:|" * len(datasets) + "---|"]
    for model, values in PUBLISHED.items():
        cells = [f"{values[d]:.2f}" if d in values else "-" for d in datasets]
        lines.append(f"| {model} | " + " | ".join(cells) + " | published |")
    for name in sorted({r["model"] for r in results}):
        cells = []
        for d in datasets:
            runs = [r for r in results if r["model"] == name and r["dataset"] == d]
            cells.append(
                f"**{mean_std([r['test_nll'] for r in runs])}**, acc "
                f"{np.mean([r['test_accuracy'] for r in runs]):.3f}"
                if runs
                else "-"
            )
        lines.append(f"| Cadenza `{name}` | " + " | ".join(cells) + " | this repo |")
    lines += [
        "",
        "Test NLL in nats per frame (lower is better), mean ± standard deviation over seeds; "
        "acc = Bay et al.'s frame accuracy (mean). Reproduce a cell: `dvc repro "
        "bench/bl/dvc.yaml` (all), or `cd bench/bl && cadenza benchmark bl --dataset DATASET "
        "--model MODEL --seed SEED --out results/DATASET-MODEL-SEED.json`.",
        "",
        "| dataset | model | seed | test NLL | epochs | seconds | device |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['dataset']} | {r['model']} | {r['seed']} | {r['test_nll']:.3f} | {r['epochs']} "
        f"| {r['seconds']} | {r['device']} |"
        for r in sorted(results, key=lambda r: (r["dataset"], r["model"], r["seed"]))
    ]
    return "\n".join(lines) + "\n"
