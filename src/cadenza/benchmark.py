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
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from cadenza.batches import pick_device
from cadenza.config import ModelParams, SourceParams
from cadenza.io import write_json
from cadenza.metrics.likelihood import frame_accuracy, frame_nll
from cadenza.models import SPECS, PitchAutoregressiveModel, load_family
from cadenza.sources import bl_pickle
from cadenza.sources.layouts import download
from cadenza.sources.registry import SOURCES
from cadenza.train import Loop, Progress, fit, seed_everything, supervised_step

log = logging.getLogger(__name__)

LOW, KEYS = 21, 88  # MIDI 21..108
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
class BenchmarkParams:
    """`bench/bl/params.yaml` (read by `cadenza.config.load_yaml_as`): where each dataset
    comes from, and the models."""

    seed: int
    datasets: dict[str, SourceParams]  # `url` "" = the registry's address
    models: dict[str, ModelParams]
    run: dict[str, list[str]] = field(default_factory=dict)  # what dvc.yaml's matrix runs
    # per model: training batches transposed by up to this many semitones (absent = none)
    transpose: dict[str, int] = field(default_factory=dict)


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
    model: torch.nn.Module, family: str, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Logits of P(y | past): independent per pitch (roll_lstm) or, for the pitch-
    autoregressive families, of each pitch given the pitches below it; either way the frame
    NLL is their summed BCE."""
    if SPECS[family].pitch_autoregressive:
        return cast(PitchAutoregressiveModel, model)(x, y)
    logits, _ = model(x)
    return logits


def masked_nll(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over pitches of the BCE, averaged over the real frames: nats per frame."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none").sum(-1)
    return bce[mask].mean()


@torch.no_grad()
def score(
    model: torch.nn.Module, family: str, pieces: list[np.ndarray], device: str
) -> dict[str, float]:
    """Frame NLL (nats) and Bay et al.'s accuracy over every frame of `pieces`. The
    accuracy's prediction is p > 0.5 per pitch, or the greedy frame where pitches are
    autoregressive."""
    model.eval()
    probs, predicted, targets = [], [], []
    for x, y, mask in batches(pieces, 16):
        x, y = x.to(device), y.to(device)
        logits = conditionals(model, family, x, y)
        probs.append(torch.sigmoid(logits.float())[mask.to(device)].cpu().numpy())
        targets.append(y[mask.to(device)].cpu().numpy())
        if SPECS[family].pitch_autoregressive:
            joint = cast(PitchAutoregressiveModel, model)
            context, _ = joint.time_context(x)
            predicted.append(joint.decode(context[mask.to(device)]).cpu().numpy())
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
) -> dict:
    """Train on train, early-stop on valid NLL, score the best weights on test.

    The shared trainer's loop (`cadenza.train.fit`) with the benchmark's own data and loss:
    batches of whole pieces padded and masked, the masked frame NLL, Adam at a constant
    learning rate (as published; `train.optimizer` and `train.schedule` are not read).
    With `transpose_max` > 0 each training batch is transposed by a random number of
    semitones in [-transpose_max, transpose_max] (Walder 2016's augmentation); valid and
    test are scored as published, untransposed."""
    seed_everything(seed)
    device = pick_device()
    model = load_family(mp.family).build(mp.net, {}).to(device)
    cfg = mp.train
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    best_state: dict[str, torch.Tensor] = {}
    start = time.perf_counter()

    def train_batches() -> Iterator[tuple[torch.Tensor, ...]]:
        for x, y, mask in batches(data["train"], cfg.batch_size, generator):
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
            lambda: masked_nll(conditionals(model, mp.family, x, y), y, mask),
            model,
            optimizer,
            cfg.clip,
            autocast=False,
        )
        return loss, int(mask.sum())

    def on_epoch(progress: Progress, valid: float, improved: bool) -> None:
        history.append({"epoch": progress.epoch, "valid_nll": valid})
        if improved:
            best_state.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    loop = Loop(
        batches=train_batches,
        n_batches=-(-len(data["train"]) // cfg.batch_size),
        step=step,
        validate=lambda _: _valid_nll(model, mp.family, data["valid"], device),
        unit="frames",
    )
    progress = fit(f"{dataset} {name}", model, optimizer, cfg, loop, Progress(), on_epoch)
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
        "device": torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        "threads)",
        "params": asdict(mp),
        "transpose_max": transpose_max,
        "seed": seed,
        "history": history,
    }
    write_json(out_json, result)
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


@torch.no_grad()
def _valid_nll(model: torch.nn.Module, family: str, pieces: list[np.ndarray], device: str) -> float:
    model.eval()
    total, frames = 0.0, 0
    for x, y, mask in batches(pieces, 16):
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        total += masked_nll(conditionals(model, family, x, y), y, mask).item() * int(mask.sum())
        frames += int(mask.sum())
    return total / max(frames, 1)


def dataset_file(dataset: str, params: SourceParams, cache: Path) -> Path:
    """The dataset's pickle through the real downloader: `url` from the params, else
    `CADENZA_MIRROR_BL_<NAME>`, else the registry's address; verified and cached."""
    return download(SOURCES[DATASETS[dataset]], params, cache)


def results_table(results: list[dict]) -> str:
    """Markdown: our rows (with the command that reproduces each) under the published ones."""
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in results)]
    header = "| model | " + " | ".join(datasets) + " | source |"
    lines = [header, "|---|" + "---:|" * len(datasets) + "---|"]
    for model, values in PUBLISHED.items():
        cells = [f"{values[d]:.2f}" if d in values else "-" for d in datasets]
        lines.append(f"| {model} | " + " | ".join(cells) + " | published |")
    for name in sorted({r["model"] for r in results}):
        cells = []
        for d in datasets:
            row = next((r for r in results if r["model"] == name and r["dataset"] == d), None)
            cells.append(
                f"**{row['test_nll']:.2f}** (acc {row['test_accuracy']:.3f})" if row else "-"
            )
        lines.append(f"| Cadenza `{name}` | " + " | ".join(cells) + " | this repo |")
    lines += [
        "",
        "Test NLL in nats per frame (lower is better); acc = Bay et al.'s frame "
        "accuracy. Reproduce a row: `dvc repro bench/bl/dvc.yaml` (all), or "
        "`cd bench/bl && cadenza benchmark bl --dataset DATASET --model MODEL "
        "--out results/DATASET_MODEL.json`.",
        "",
        "| dataset | model | epochs | seconds | device |",
        "|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {r['dataset']} | {r['model']} | {r['epochs']} | {r['seconds']} | {r['device']} |"
        for r in results
    ]
    return "\n".join(lines) + "\n"
