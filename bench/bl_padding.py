"""Training-step time of the polyphonic benchmark's models on real pieces; prints the ratio of
the output on the real frames only to the output on the whole padded batch.

    python bench/bl_padding.py --pickle ../shared/datasets/boulanger2012/Nottingham.pickle
    python bench/bl_padding.py --pickle PATH --models roll_made roll_nade --batches 20

A training batch holds whole pieces padded to the longest of them: on Nottingham, batches of 8
random pieces carry about 1.8 padded frames for every real one. `cadenza benchmark bl` runs
each model's time axis over the padded batch but its pitch-wise output (the MADE, the pitch
LSTM, the note axis, the sigmoid layer) on the real frames only (`conditionals`); the
baseline is the model's forward pass over the whole padded batch, masked afterwards, as the
benchmark ran before. Both take the same first `--batches` training batches of the seed-0
order, from the same initial weights, a forward and backward pass and an Adam step each.
The script prints seconds a batch, the ratio, and an epoch's time projected from them.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cadenza.benchmark import (
    BenchmarkParams,
    batches,
    conditionals,
    frames_nll,
    load_bl,
)
from cadenza.config import load_yaml_as
from cadenza.models import SPECS, load_family
from cadenza.testing.checkout import ROOT, SHARED

Loss = Callable[[torch.nn.Module, str, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def real_frames(model, family, x, y, mask) -> torch.Tensor:
    """What the benchmark trains on: the pitch-wise output at the real frames only."""
    return frames_nll(conditionals(model, family, x, y, mask), y[mask])


def padded(model, family, x, y, mask) -> torch.Tensor:
    """The baseline: the whole padded batch through the model, the padding masked out after."""
    logits = model(x, y) if SPECS[family].pitch_autoregressive else model(x)[0]
    return frames_nll(logits[mask], y[mask])


def seconds_a_batch(model: torch.nn.Module, family: str, chosen: list, loss: Loss) -> float:
    """Mean wall time of a training step (forward, backward, Adam) over `chosen` batches,
    after one untimed step, so that neither side pays the first call's set-up."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss(model, family, x, y, mask).backward()
        optimizer.step()

    step(*chosen[0])
    start = time.perf_counter()
    for batch in chosen:
        step(*batch)
    return (time.perf_counter() - start) / len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = SHARED / "datasets" / "boulanger2012" / "Nottingham.pickle"
    parser.add_argument("--pickle", type=Path, default=default, help="a B-L pickle")
    parser.add_argument("--params", type=Path, default=ROOT / "bench" / "bl" / "params.yaml")
    parser.add_argument("--models", nargs="+", default=["roll_lstm", "roll_made", "roll_nade"])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_yaml_as(args.params, BenchmarkParams)
    train = load_bl(args.pickle)["train"]
    for name in args.models:
        mp = params.models[name]
        size = mp.train.batch_size
        order = batches(train, size, torch.Generator().manual_seed(0))
        chosen = list(itertools.islice(order, args.batches))
        real = sum(int(m.sum()) for _, _, m in chosen)
        total = sum(m.numel() for _, _, m in chosen)
        torch.manual_seed(0)
        model = load_family(mp.family).build(mp.net, {})
        per_batch = {
            label: seconds_a_batch(copy.deepcopy(model), mp.family, chosen, loss)
            for label, loss in (("padded", padded), ("real frames", real_frames))
        }
        epoch = -(-len(train) // size)
        print(
            f"{name} on {args.pickle.name}, {len(chosen)} batches of {size} "
            f"({total / real:.2f} padded frames a real one), {args.threads} threads: "
            + ", ".join(
                f"{label} {s:.3f} s a batch ({s * epoch:.0f} s an epoch of {epoch})"
                for label, s in per_batch.items()
            )
            + f"; ratio real frames / padded {per_batch['real frames'] / per_batch['padded']:.2f}x"
        )


if __name__ == "__main__":
    main()
