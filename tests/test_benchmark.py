"""The polyphonic benchmark: the loader's exact split sizes, an exact NLL, and training
that lowers the valid NLL. The published pickles come from ../shared."""

import itertools
import json
import math
import pickle

import numpy as np
import pytest
import torch

from cadenza.benchmark import (
    KEYS,
    batches,
    conditionals,
    frames_nll,
    load_bl,
    results_table,
    transpose,
)
from cadenza.config import ModelParams, from_dict
from cadenza.models import load_family
from cadenza.sources.bl_pickle import BLPickleError
from cadenza.testing.checkout import ROOT, SHARED

BL = SHARED / "datasets" / "boulanger2012"
needs_bl = pytest.mark.skipif(not BL.exists(), reason=f"{BL} is absent (see ../shared)")


@needs_bl
@pytest.mark.parametrize(
    ("file", "pieces", "frames"),
    [
        ("JSB Chorales.pickle", (229, 76, 77), (13_807, 4_602, 4_725)),
        ("Nottingham.pickle", (694, 173, 170), (176_561, 45_513, 44_463)),
    ],
)
def test_loader_returns_the_published_split_sizes(file, pieces, frames):
    data = load_bl(BL / file)
    assert tuple(len(data[s]) for s in ("train", "valid", "test")) == pieces
    assert tuple(sum(len(p) for p in data[s]) for s in ("train", "valid", "test")) == frames
    assert all(p.shape[1] == KEYS for p in data["train"])


def test_loader_refuses_pitches_off_the_keyboard_and_any_code(tmp_path):
    """Pitch 20 used to wrap around to the top key's column, and a pickle naming a global
    (here os.system) used to run it: both are refused now, naming the file."""
    path = tmp_path / "JSB Chorales.pickle"
    path.write_bytes(pickle.dumps({"train": [[[60], [20, 64]]], "valid": [], "test": []}, 2))
    with pytest.raises(
        BLPickleError,
        match=r"split 'train', piece 0, step 1: 20 \(int\) is "
        r"not a pitch \(an int in 21\.\.108\)",
    ):
        load_bl(path)
    marker = tmp_path / "pwned"
    path.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(BLPickleError, match=r"JSB Chorales\.pickle: refused: .*os\.system"):
        load_bl(path)
    assert not marker.exists()


def _model(family: str, pitches: int = 4) -> ModelParams:
    net = {"pitches": pitches, "embedding": 8, "hidden": 16}
    if family == "roll_nade":
        net["pitch_hidden"] = 8
    if family == "roll_made":
        net["made_hidden"] = 12
    if family == "roll_biaxial":
        net = {"pitches": pitches, "hidden": 8, "note_hidden": 6}
    return from_dict(
        ModelParams, {"family": family, "net": net, "train": {"epochs": 3, "lr": 0.01}}, "m"
    )


@pytest.mark.parametrize("family", ["roll_lstm", "roll_nade", "roll_made", "roll_biaxial"])
def test_frame_nll_is_a_normalised_distribution(family):
    """exp(-NLL) summed over all 2^P possible next frames is 1: a real probability."""
    torch.manual_seed(0)
    mp = _model(family)
    model = load_family(family).build(mp.net, {}).eval()
    past = torch.tensor([[[1.0, 0, 1, 0], [0, 1, 0, 0]]])
    total = 0.0
    for bits in itertools.product([0.0, 1.0], repeat=4):
        y = torch.cat([past[:, 1:], torch.tensor([[bits]])], dim=1)
        mask = torch.tensor([[False, True]])
        with torch.no_grad():
            nll = frames_nll(conditionals(model, family, past, y, mask), y[mask])
        total += math.exp(-nll.item())
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("family", ["roll_lstm", "roll_nade", "roll_made", "roll_biaxial"])
def test_conditionals_on_the_real_frames_are_the_padded_batchs(family):
    """`conditionals` runs the pitch-wise output on the real frames only: the same logits
    as the whole padded batch's forward pass at those frames, and none for the padding."""
    torch.manual_seed(0)
    model = load_family(family).build(_model(family, pitches=KEYS).net, {}).eval()
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 2, (n, KEYS), dtype=np.uint8) for n in (5, 2, 3)]
    x, y, mask = next(batches(pieces, 3))
    with torch.no_grad():
        full = model(x)[0] if family == "roll_lstm" else model(x, y)
        real = conditionals(model, family, x, y, mask)
    assert real.shape == (10, KEYS)
    torch.testing.assert_close(real, full[mask])


@pytest.mark.parametrize("family", ["roll_made", "roll_biaxial"])
def test_conditionals_see_only_the_pitches_below(family):
    """d logit_p / d y_j is zero for every j >= p of the same frame: exact autoregression."""
    torch.manual_seed(0)
    model = load_family(family).build(_model(family, pitches=6).net, {}).eval()
    x = torch.rand(1, 3, 6).round()
    y = torch.rand(1, 3, 6).round().requires_grad_()
    logits = model(x, y)
    for p in range(6):
        (grad,) = torch.autograd.grad(logits[0, -1, p], y, retain_graph=True)
        assert not grad[0, -1, p:].any() and not grad[0, :-1].any()
        assert p == 0 or grad[0, -1, :p].any()


@pytest.mark.parametrize("family", ["roll_nade", "roll_made", "roll_biaxial"])
def test_sampling_walks_the_keys_as_training_scores_them(family):
    """The key-by-key sampler (`decode`) and the teacher-forced conditionals that training
    scores (`pitch_logits`) are one model: each greedily chosen key is on exactly where the
    conditional given the chosen keys below it says p > 0.5."""
    torch.manual_seed(0)
    model = load_family(family).build(_model(family, pitches=6).net, {}).eval()
    with torch.no_grad():
        for weight in model.parameters():  # larger than at init: keys that depend on their input
            weight.normal_(0, 3)
        context, _ = model.time_context(torch.rand(32, 3, 6).round())
        frame = model.decode(context[:, -1])
        logits = model.pitch_logits(context[:, -1], frame)
    assert 0 < frame.sum() < frame.numel()  # some keys on, some off: the check can fail
    assert torch.equal((logits > 0).float(), frame)


def test_biaxial_keys_share_their_weights():
    """The time axis is tied across keys: an octave up, a key's context is the context its
    octave-lower key had (the same pitch class, vicinity and pitch-class counts), once the
    one input that says where it is, its position, is given zero weight."""
    torch.manual_seed(0)
    mp = from_dict(
        ModelParams,
        {"family": "roll_biaxial", "net": {"pitches": KEYS, "lowest": 21, "hidden": 16}},
        "m",
    )
    model = load_family("roll_biaxial").build(mp.net, {}).eval()
    frames = torch.zeros(1, 4, KEYS)
    frames[0, :, [20, 24, 27]] = 1  # keys low enough to move an octave up
    frames[0, 2, 31] = 1
    up = transpose(frames, 12)
    with torch.no_grad():
        context, _ = model.time_context(frames)
        moved, _ = model.time_context(up)
        hidden = mp.net.hidden
        # the time LSTM reads the position: an octave up, its output differs
        assert not torch.allclose(moved[:, :, 40, :hidden], context[:, :, 28, :hidden])
        model.time_rnn.weight_ih_l0[:, 0] = 0  # the position input
        context, _ = model.time_context(frames)
        moved, _ = model.time_context(up)
    # keys whose octave-wide vicinity stays on the keyboard both times: the same time-LSTM
    # output, and the same inputs read from the frame but for the position itself
    torch.testing.assert_close(moved[:, :, 24:64, :hidden], context[:, :, 12:52, :hidden])
    torch.testing.assert_close(moved[:, :, 24:64, hidden + 1 :], context[:, :, 12:52, hidden + 1 :])


def test_transposition_shifts_within_the_keyboard():
    y = torch.zeros(1, 2, KEYS)
    y[0, 0, [0, 40, KEYS - 1]] = 1
    up, down = transpose(y, 2), transpose(y, -2)
    assert up[0, 0].nonzero().flatten().tolist() == [2, 42]  # the top key leaves the roll
    assert down[0, 0].nonzero().flatten().tolist() == [38, KEYS - 3]
    assert torch.equal(transpose(y, 0), y)


def test_batches_delay_the_input_by_one_frame():
    pieces = [np.eye(3, KEYS, dtype=np.uint8), np.ones((1, KEYS), dtype=np.uint8)]
    x, y, mask = next(batches(pieces, 2))
    assert x.shape == y.shape == (2, 3, KEYS) and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert not x[:, 0].any() and torch.equal(x[0, 1:], y[0, :2])


# one small layer per axis: the tied time LSTM runs once per key, 88 times a frame
BIAXIAL_SMALL = {"lowest": 21, "hidden": 16, "layers": 1, "note_hidden": 16, "note_layers": 1}


@needs_bl
@pytest.mark.parametrize("family", ["roll_lstm", "roll_nade", "roll_made", "roll_biaxial"])
def test_short_training_lowers_the_valid_nll(tmp_path, family):
    from cadenza.benchmark import run

    data = load_bl(BL / "JSB Chorales.pickle")
    data = {"train": data["train"][:40], "valid": data["valid"][:10], "test": data["test"][:5]}
    mp = from_dict(
        ModelParams,
        {
            "family": family,
            "net": {"pitches": KEYS, "hidden": 64}
            | (BIAXIAL_SMALL if family == "roll_biaxial" else {}),
            "train": {"epochs": 3, "batch_size": 8, "lr": 0.003},
        },
        "m",
    )
    result = run(
        "jsb",
        data,
        family,
        mp,
        0,
        tmp_path / "r.json",
        transpose_max=3 if family == "roll_made" else 0,
    )
    history = [h["valid_nll"] for h in result["history"]]
    assert history[-1] < history[0] and math.isfinite(result["test_nll"])
    table = results_table([result])
    assert "RNN-NADE (B-L 2012) | 5.56" in table and f"Cadenza `{family}`" in table


def _tiny(epochs: int, **train) -> ModelParams:
    """A small roll_made; its rate is annealed on a plateau (so a resumed run must restore
    the schedule's state too) unless `train` says otherwise."""
    return from_dict(
        ModelParams,
        {
            "family": "roll_made",
            "net": {"pitches": KEYS, "hidden": 32, "made_hidden": 64},
            "train": {
                "epochs": epochs,
                "batch_size": 8,
                "lr": 0.003,
                "patience": 0,
                "schedule": "plateau",
                **train,
            },
        },
        "m",
    )


def _toy_data() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    rolls = [(rng.random((n, KEYS)) < 0.05).astype(np.uint8) for n in (30, 50, 70, 90, 40, 60)]
    return {"train": rolls[:4], "valid": rolls[4:5], "test": rolls[5:]}


def test_a_killed_benchmark_run_resumes_from_its_last_epoch(tmp_path, monkeypatch):
    """A run longer than a session (roll_nade on Nottingham: hours) goes on where it was
    stopped: killed after epoch 2 of 3, started again, it ends where an uninterrupted run
    ends, and deletes its resume file."""
    import cadenza.benchmark as bench

    whole = bench.run("jsb", _toy_data(), "m", _tiny(3), 0, tmp_path / "whole.json")
    real_save = bench.save_data

    def die_after_epoch_2(path, payload):
        real_save(path, payload)
        if payload["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(bench, "save_data", die_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        bench.run("jsb", _toy_data(), "m", _tiny(3), 0, tmp_path / "cut.json")
    assert (tmp_path / "cut.resume.pt").exists() and not (tmp_path / "cut.json").exists()
    monkeypatch.setattr(bench, "save_data", real_save)
    resumed = bench.run("jsb", _toy_data(), "m", _tiny(3), 0, tmp_path / "cut.json")
    assert not (tmp_path / "cut.resume.pt").exists()
    assert resumed["history"] == whole["history"]
    assert resumed["test_nll"] == pytest.approx(whole["test_nll"], abs=1e-9)
    # a resume file of another run (another seed) is not used
    monkeypatch.setattr(bench, "save_data", die_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        bench.run("jsb", _toy_data(), "m", _tiny(3), 0, tmp_path / "other.json")
    monkeypatch.setattr(bench, "save_data", real_save)
    other = bench.run("jsb", _toy_data(), "m", _tiny(3), 1, tmp_path / "other.json")
    assert len(other["history"]) == 3 and other["seed"] == 1


def test_the_plateau_schedule_cuts_the_rate_only_after_its_patience(tmp_path):
    """`schedule: plateau` halves Adam's rate after `plateau_patience` + 1 epochs in a row
    without a better valid NLL, and at no other time; `constant` (the published setting)
    never changes it."""
    from cadenza.benchmark import run

    data = _toy_data()
    fast = {"lr": 0.3, "plateau_patience": 1}  # a rate high enough to miss a few epochs
    result = run("jsb", data, "m", _tiny(10, **fast), 0, tmp_path / "plateau.json")
    lrs = [h["lr"] for h in result["history"]]
    best, stale = math.inf, 0
    for h, next_lr in zip(result["history"], [*lrs[1:], None], strict=True):
        stale = 0 if h["valid_nll"] < best else stale + 1
        best = min(best, h["valid_nll"])
        if next_lr is not None:
            assert next_lr == (h["lr"] / 2 if stale == 2 else h["lr"]), result["history"]
        stale %= 2  # the schedule counts afresh after a cut
    assert lrs[0] == 0.3 and lrs[-1] < 0.3  # the check above saw at least one cut
    constant = run("jsb", data, "m", _tiny(10, **fast, schedule="constant"), 0, tmp_path / "c.json")
    assert {h["lr"] for h in constant["history"]} == {0.3}


def test_long_pieces_train_on_windows_and_are_scored_whole(tmp_path):
    from cadenza.benchmark import cut_windows, eval_batch_size, run

    pieces = _toy_data()["train"]
    windows = cut_windows(pieces, 25)
    assert [len(w) for w in windows[:3]] == [25, 5, 25]  # 30 frames = 25 + 5
    assert sum(len(w) for w in windows) == sum(len(p) for p in pieces)
    assert np.array_equal(np.concatenate(windows[:2]), pieces[0])
    assert eval_batch_size(pieces) == 16
    assert eval_batch_size([np.zeros((9_000, KEYS))]) == 3  # 32,000 // 9,000
    result = run("jsb", _toy_data(), "m", _tiny(1), 0, tmp_path / "w.json", window=25)
    assert result["window"] == 25 and result["test_frames"] == 60  # the test piece, whole


def test_the_table_gives_mean_and_std_over_seeds():
    runs = [
        {
            "dataset": "jsb",
            "model": "roll_made",
            "seed": s,
            "test_nll": v,
            "test_accuracy": 0.3,
            "epochs": 10,
            "seconds": 1.0,
            "device": "CPU",
        }
        for s, v in enumerate([5.0, 5.1, 5.2])
    ]
    table = results_table(runs)
    assert "| Cadenza `roll_made` | **5.10 ± 0.10 (n = 3)**, acc 0.300 |" in table
    assert "| jsb | roll_made | 2 | 5.200 | 10 | 1.0 | CPU |" in table


def test_the_committed_tables_are_the_committed_results():
    """bench/bl/results.md, the README's table and docs/benchmarks.md's (which adds the
    MuseData and Piano-midi.de columns) all say what the committed result JSONs give: a page
    copied by hand once went stale when a seed was added."""
    bench = ROOT / "bench" / "bl"
    runs = [json.loads(p.read_text()) for p in sorted((bench / "results").glob("*.json"))]
    table = results_table(runs)
    summary = table.split("\n\n")[0]  # the first table: the mean ± std per cell
    assert (bench / "results.md").read_text() == table
    assert summary in (ROOT / "README.md").read_text()
    docs = {
        line.split(" | ")[0]: line.replace("**", "").split(" | ")[1:]
        for line in (ROOT / "docs" / "benchmarks.md").read_text().splitlines()
        if line.startswith("| Cadenza `")
    }
    ours = [line for line in summary.splitlines() if line.startswith("| Cadenza `")]
    assert len(docs) == len(ours)
    for line in ours:
        cells = line.replace("**", "").split(" | ")
        assert docs[cells[0]][: len(cells) - 2] == cells[1:-1], cells[0]


@pytest.mark.skipif(
    not (SHARED / "datasets" / "piano-midi.de").exists(), reason="../shared piano-midi.de absent"
)
def test_piano_midi_de_runs_through_the_cli_on_windows_of_whole_pieces(tmp_path):
    """Piano-midi.de's benchmark pickle is not in ../shared: one in the B-L format, made from
    whole pieces of the real piano-midi.de copy, fetched through the CLI's mirror variable;
    training reads windows (params `windows:`), test scores every frame of the whole pieces."""
    import os
    import subprocess
    import sys

    import yaml

    from cadenza.testing.archives import bl_pickle_from_midi

    blob = bl_pickle_from_midi(SHARED / "datasets" / "piano-midi.de", 0.5, (2, 2, 2), max_steps=0)
    (tmp_path / "Piano-midi.de.pickle").write_bytes(blob)
    test_frames = sum(len(p) for p in pickle.loads(blob)["test"])
    assert test_frames > 1000  # whole pieces, longer than any window
    tiny = {
        "family": "roll_made",
        "net": {"pitches": KEYS, "hidden": 16, "made_hidden": 32},
        "train": {"epochs": 1, "batch_size": 8},
    }
    params = {
        "datasets": {"piano_midi_de": {}},
        "models": {"tiny": tiny},
        "windows": {"piano_midi_de": 100},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, CADENZA_MIRROR_BL_PIANO_MIDI=str(tmp_path / "Piano-midi.de.pickle"))
    proc = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "benchmark", "bl", "--dataset", "piano_midi_de"]
        + ["--model", "tiny", "--seed", "1", "--out", "r.json", "--cache", "cache"]
        + ["--params", "params.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["window"] == 100 and result["seed"] == 1
    assert result["test_frames"] == test_frames and math.isfinite(result["test_nll"])
