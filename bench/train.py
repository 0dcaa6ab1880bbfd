"""Benchmark training throughput of every model of params.yaml; prints units/s and a ratio.

    python bench/train.py                         # all models, on data/prepared (make run)
    python bench/train.py --models chord_lstm roll_lstm --steps 30

For each model it builds the stream the trainer uses (tokens, frames or notes from the train
split), then times `--steps` of the trainer's steps with the model's own batch size and sequence
length, on the GPU when there is one. The baseline, run in the same process, is the same
model with batch size 1: the ratio says how much batching buys on this machine.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import cast

import torch

from cadenza.batches import pick_device, windows
from cadenza.config import ModelParams, load_params
from cadenza.data import load_units, make_info, to_stream
from cadenza.models import SPECS, Adversarial, load_family
from cadenza.testing.checkout import ROOT
from cadenza.train import OPTIMIZERS, supervised_step


def throughput(
    name: str,
    mp: ModelParams,
    stream: torch.Tensor,
    info: dict,
    batch_size: int,
    steps: int,
    device: str,
) -> float:
    """Units (tokens, frames or notes) per second over `steps` training steps."""
    family = load_family(mp.family)
    torch.manual_seed(0)
    model = family.build(mp.net, info).to(device)
    adversarial = cast(Adversarial, family) if SPECS[mp.family].adversarial else None
    optimizers = (
        adversarial.make_optimizers(model, mp.train)
        if adversarial
        else [OPTIMIZERS[mp.train.optimizer](model.parameters(), lr=mp.train.lr)]
    )
    batches = list(windows(stream, mp.train.seq_len, batch_size, torch.Generator()))
    batches = (batches * (steps // max(len(batches), 1) + 1))[: steps + 2]
    units = 0
    for i, (x, y) in enumerate(batches):
        if i == 2:  # two warm-up steps
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = x.to(device), y.to(device)
        if adversarial:
            adversarial.train_step(model, x, y, optimizers)
        else:  # the trainer's own step, gradient clipping included
            supervised_step(
                partial(family.loss, model, x, y),
                model,
                optimizers[0],
                mp.train.clip,
                device == "cuda",
            )
        if i >= 2:
            units += y.shape[0] * y.shape[1]
    if device == "cuda":
        torch.cuda.synchronize()
    return units / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if not (args.prepared / "_meta.json").exists():
        raise SystemExit(f"{args.prepared}: not prepared yet; run `make run` first")
    params = load_params(ROOT / "params.yaml")
    device = pick_device()
    name_of_device = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {name_of_device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':16s} {'unit':7s} {'batch':>5s} {'units/s':>10s} {'batch 1':>9s} {'ratio':>6s}")
    for name in args.models or list(params.models):
        mp = params.models[name]
        if mp.train.epochs == 0:
            print(f"{name:16s} not trained (a baseline)")
            continue
        units = load_units(args.prepared, "train", mp, params.seed)
        info = make_info(units, mp)
        stream = to_stream(units, info)
        fast = throughput(name, mp, stream, info, mp.train.batch_size, args.steps, device)
        # batch norm needs two samples per batch: the GANs' baseline is batch size 2
        one = 2 if mp.family.endswith("gan") else 1
        slow = throughput(name, mp, stream, info, one, args.steps, device)
        print(
            f"{name:16s} {SPECS[mp.family].kind:7s} {mp.train.batch_size:5d} "
            f"{fast:10,.0f} {slow:9,.0f} {fast / slow:5.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
