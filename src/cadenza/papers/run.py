"""One paper model, one seed: train it with the zoo's trainer, score it on every split."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from cadenza.batches import device_label, pick_device
from cadenza.config import ModelParams
from cadenza.data import chosen_sources
from cadenza.evaluate import likelihood
from cadenza.models import SPECS
from cadenza.papers import SPLITS
from cadenza.papers.gan import gan_scores
from cadenza.train import train

log = logging.getLogger(__name__)


def run_cell(
    name: str, mp: ModelParams, prepared: Path, work: Path, seed: int, eval_units: dict[str, int]
) -> dict[str, Any]:
    """Train model `name` with `seed` (checkpoint and log under `work`), then score the
    best weights on train, valid and test; return the run's figures (also the JSON `cadenza
    paper run` writes). Scoring the training split is how paper 001's "training accuracy"
    is measured, on the final weights rather than Keras' running average over the epoch.
    A GAN has no likelihood: its splits get paper 004's losses and accuracies instead.
    A resumed run's `seconds` count the killed processes' epochs too, as their log rows
    timed them (their start-up is not in it)."""
    start = time.perf_counter()
    summary = train(name, mp, prepared, work / "ckpt.pt", work / "train.csv", seed)
    train_seconds = time.perf_counter() - start + summary["resumed_seconds"]
    log_path = work / "train.csv"
    rows = pd.read_csv(log_path).to_dict("records") if log_path.stat().st_size else []
    result: dict[str, Any] = {
        "model": name,
        "seed": seed,
        "run": {
            "sources": chosen_sources(prepared, mp.prefer_sources)[0],
            "epochs": summary["epochs"],
            "steps": summary["steps"],
            "seconds": round(train_seconds, 1),
            "device": device_label(pick_device()),
        },
        "log": rows[-1] if rows else {},
        "params": asdict(mp),
    }
    adversarial = SPECS[mp.family].adversarial
    for split in SPLITS:
        cap = eval_units.get(split, 0)
        if adversarial:
            result[split] = gan_scores(work / "ckpt.pt", prepared, seed, cap, split=split)
        else:
            result[split] = likelihood(work / "ckpt.pt", prepared, seed, cap, split=split)[0]
    log.info("%s seed %d: %s", name, seed, ", ".join(f"{s} {result[s]}" for s in SPLITS))
    return result
