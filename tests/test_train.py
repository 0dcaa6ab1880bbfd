"""Trainer, checkpoint, generation and evaluation on a tiny real prepared corpus."""

import math

import pandas as pd
import pytest
import symusic
import torch

from cadenza.checkpoint import load_checkpoint
from cadenza.config import EvaluateParams, GenerateParams, ModelParams, PrepareParams, from_dict
from cadenza.evaluate import evaluate_model
from cadenza.generate import generate
from cadenza.prepare.run import prepare
from cadenza.train import train


@pytest.fixture
def prepared(raw_corpus, tmp_path):
    out = tmp_path / "prepared"
    prepare(raw_corpus, ["toy"], out, PrepareParams(valid_fraction=0.2, test_fraction=0.2))
    return out


def _model(scheme: str, epochs: int = 3) -> ModelParams:
    return from_dict(ModelParams, {
        "family": "token_lm", "tokens": {"scheme": scheme, "steps_per_beat": 1},
        "net": {"cell": "lstm", "layers": 1, "embedding": 16, "hidden": 32},
        "train": {"epochs": epochs, "batch_size": 8, "seq_len": 16, "lr": 0.01,
                  "patience": 5}}, "m")


@pytest.mark.parametrize("scheme", ["chord", "pitch_next"])
def test_train_generate_evaluate(prepared, tmp_path, scheme):
    ckpt, log = tmp_path / "m" / "ckpt.pt", tmp_path / "m.csv"
    summary = train("toy_lm", _model(scheme), prepared, ckpt, log, seed=0)
    history = pd.read_csv(log)
    assert len(history) == 3 and history.train_loss.is_monotonic_decreasing
    assert math.isfinite(summary["best_valid_loss"])

    model, params, payload = load_checkpoint(ckpt)
    assert payload["name"] == "toy_lm" and params == _model(scheme)
    assert payload["vocab"][:3] == ["<pad>", "<unk>", "<eos>"]

    out = tmp_path / "gen"
    table = generate(ckpt, prepared, out, GenerateParams(n_samples=2, length=40), seed=0)
    assert len(table) == 2 and (table.n_tokens == 40).all()
    for name in table.file:
        score = symusic.Score(str(out / name))  # a valid MIDI file
        assert score.note_num() > 0

    metrics = evaluate_model(ckpt, prepared, out, tmp_path / "m.json", EvaluateParams(), 0)
    assert metrics["n_pieces"] == 2
    for key in ("used_pitch_classes", "polyphony", "nll", "perplexity", "accuracy"):
        assert math.isfinite(metrics[key]), key
    assert metrics["nll"] < math.log(len(payload["vocab"]))  # better than uniform


def test_training_is_deterministic(prepared, tmp_path):
    for run in ("a", "b"):
        train("toy_lm", _model("chord", 2), prepared, tmp_path / run / "ckpt.pt",
              tmp_path / f"{run}.csv", seed=0)
    a = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_loss_falls_when_overfitting_a_tiny_batch(prepared, tmp_path):
    params = _model("pitch_next", epochs=15)
    train("toy_lm", params, prepared, tmp_path / "ckpt.pt", tmp_path / "log.csv", seed=0)
    history = pd.read_csv(tmp_path / "log.csv")
    assert history.train_loss.iloc[-1] < 0.7 * history.train_loss.iloc[0]


def test_tampered_or_truncated_checkpoint_is_refused(prepared, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    train("toy_lm", _model("chord", 1), prepared, ckpt, tmp_path / "log.csv", seed=0)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a cadenza-checkpoint/1 checkpoint"):
        load_checkpoint(foreign)

    class Evil:  # an object that runs code when unpickled must never load
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "cadenza-checkpoint/1", "x": Evil()}, evil)
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(evil)
