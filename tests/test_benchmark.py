"""The polyphonic benchmark: the loader's exact split sizes, an exact NLL, and training
that lowers the valid NLL. The published pickles come from ../shared."""

import itertools
import math

import numpy as np
import pytest
import torch

from cadenza.benchmark import KEYS, batches, conditionals, load_bl, masked_nll, results_table
from cadenza.config import ModelParams, from_dict
from cadenza.models import FAMILIES

from .conftest import SHARED

BL = SHARED / "datasets" / "boulanger2012"
needs_bl = pytest.mark.skipif(not BL.exists(), reason=f"{BL} is absent (see ../shared)")


@needs_bl
@pytest.mark.parametrize(("file", "pieces", "frames"), [
    ("JSB Chorales.pickle", (229, 76, 77), (13_807, 4_602, 4_725)),
    ("Nottingham.pickle", (694, 173, 170), (176_561, 45_513, 44_463)),
])
def test_loader_returns_the_published_split_sizes(file, pieces, frames):
    data = load_bl(BL / file)
    assert tuple(len(data[s]) for s in ("train", "valid", "test")) == pieces
    assert tuple(sum(len(p) for p in data[s]) for s in ("train", "valid", "test")) == frames
    assert all(p.shape[1] == KEYS for p in data["train"])


def _model(family: str, pitches: int = 4) -> ModelParams:
    net = {"pitches": pitches, "embedding": 8, "hidden": 16}
    if family == "roll_nade":
        net["pitch_hidden"] = 8
    return from_dict(ModelParams, {"family": family, "net": net,
                                   "train": {"epochs": 3, "lr": 0.01}}, "m")


@pytest.mark.parametrize("family", ["roll_lstm", "roll_nade"])
def test_frame_nll_is_a_normalised_distribution(family):
    """exp(-NLL) summed over all 2^P possible next frames is 1: a real probability."""
    torch.manual_seed(0)
    mp = _model(family)
    model = FAMILIES[family].build(mp.net, {}).eval()
    past = torch.tensor([[[1.0, 0, 1, 0], [0, 1, 0, 0]]])
    total = 0.0
    for bits in itertools.product([0.0, 1.0], repeat=4):
        y = torch.cat([past[:, 1:], torch.tensor([[bits]])], dim=1)
        mask = torch.tensor([[False, True]])
        with torch.no_grad():
            nll = masked_nll(conditionals(model, family, past, y), y, mask)
        total += math.exp(-nll.item())
    assert total == pytest.approx(1.0, abs=1e-5)


def test_batches_delay_the_input_by_one_frame():
    pieces = [np.eye(3, KEYS, dtype=np.uint8), np.ones((1, KEYS), dtype=np.uint8)]
    x, y, mask = next(batches(pieces, 2))
    assert x.shape == y.shape == (2, 3, KEYS) and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert not x[:, 0].any() and torch.equal(x[0, 1:], y[0, :2])


@needs_bl
@pytest.mark.parametrize("family", ["roll_lstm", "roll_nade"])
def test_short_training_lowers_the_valid_nll(tmp_path, family):
    from cadenza.benchmark import run

    data = load_bl(BL / "JSB Chorales.pickle")
    data = {"train": data["train"][:40], "valid": data["valid"][:10], "test": data["test"][:5]}
    mp = from_dict(ModelParams, {"family": family, "net": {"pitches": KEYS, "hidden": 64},
                                 "train": {"epochs": 3, "batch_size": 8, "lr": 0.003}}, "m")
    result = run("jsb", data, family, mp, 0, tmp_path / "r.json")
    history = [h["valid_nll"] for h in result["history"]]
    assert history[-1] < history[0] and math.isfinite(result["test_nll"])
    table = results_table([result])
    assert "RNN-NADE (B-L 2012) | 5.56" in table and f"Cadenza `{family}`" in table
