"""Every model family, on a tiny real prepared corpus: a finite first step, a falling loss
when overfitting, samples that are valid MIDI, checkpoints that reload and resume."""

import dataclasses
import math

import pandas as pd
import pytest
import symusic
import torch
import yaml

from cadenza.batches import stream_logits, windows
from cadenza.checkpoint import load_checkpoint
from cadenza.config import (
    EvaluateParams,
    GenerateParams,
    ModelParams,
    ParamsError,
    PrepareParams,
    TrainParams,
    from_dict,
)
from cadenza.data import cap_units, load_units, make_info, to_stream
from cadenza.evaluate import evaluate_model
from cadenza.generate import generate
from cadenza.models import SPECS, Adversarial, load_family
from cadenza.prepare.stage import prepare
from cadenza.testing.checkout import ROOT
from cadenza.train import Loop, Progress, cyclic_lr, fit, train

# every model of the shipped params.yaml, shrunk to a tiny net and a few short batches
SHIPPED = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]
SMALL_NET = {
    "hidden": 16,
    "embedding": 8,
    "d_model": 16,
    "heads": 2,
    "ff": 32,
    "vae_hidden": 16,
    "latent": 4,
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from cadenza.testing.corpora import write_corpus

    root = tmp_path_factory.mktemp("corpus")
    out = root / "prepared"
    prepare(write_corpus(root), ["toy"], out, PrepareParams(valid_fraction=0.2, test_fraction=0.2))
    return out


def shipped(name: str, epochs: int = 2, **train) -> ModelParams:
    entry = yaml.safe_load(yaml.safe_dump(SHIPPED[name]))
    entry["net"] = {k: (SMALL_NET.get(k, v)) for k, v in entry.get("net", {}).items()}
    if entry["train"].get("epochs", 1):
        entry["train"].update(
            {"epochs": epochs, "batch_size": 4, "max_batches": 3, "patience": 5, **train}
        )
    return from_dict(ModelParams, entry, f"models.{name}")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_model_trains_generates_and_evaluates(prepared, tmp_path, name):
    mp = shipped(name)
    ckpt, log = tmp_path / "ckpt.pt", tmp_path / "log.csv"
    train(name, mp, prepared, ckpt, log, seed=0)
    if mp.train.epochs:
        history = pd.read_csv(log)
        assert len(history) == 2 and history.train_loss.map(math.isfinite).all()
    model, params, payload = load_checkpoint(ckpt)
    assert payload["name"] == name and params == mp
    out = tmp_path / "gen"
    table = generate(ckpt, prepared, out, GenerateParams(n_samples=2, length=48), seed=0)
    assert len(table) == 2
    for file in table.file:
        symusic.Score(str(out / file))  # a valid MIDI file (possibly with no notes)
    metrics = evaluate_model(ckpt, prepared, out, tmp_path / "m.json", EvaluateParams(), 0)
    if SPECS[mp.family].kind == "tokens":
        assert math.isfinite(metrics["nll"]) and 0 <= metrics["accuracy"] <= 1
    if mp.family == "roll_lstm":
        assert math.isfinite(metrics["frame_nll"]) and 0 <= metrics["frame_accuracy"] <= 1


@pytest.mark.parametrize(
    "family", sorted(f for f, spec in SPECS.items() if spec.pitch_autoregressive)
)
def test_the_benchmark_families_also_train_and_generate_in_the_pipeline(prepared, tmp_path, family):
    """params.yaml ships none of them, but `family: roll_biaxial` (or `roll_made`,
    `roll_nade`) is a valid choice there: on the pipeline's 128-key rolls it trains, keeps a
    checkpoint that reloads, and samples valid MIDI pitch by pitch."""
    net = {"hidden": 16, "embedding": 8, "pitch_hidden": 8, "made_hidden": 16, "note_hidden": 8}
    fields = {f.name for f in dataclasses.fields(SPECS[family].net)}
    mp = from_dict(
        ModelParams,
        {
            "family": family,
            "net": {k: v for k, v in net.items() if k in fields},
            "train": {"epochs": 1, "batch_size": 4, "max_batches": 2, "seq_len": 16},
        },
        f"models.{family}",
    )
    ckpt = tmp_path / "ckpt.pt"
    train(family, mp, prepared, ckpt, tmp_path / "log.csv", seed=0)
    assert load_checkpoint(ckpt)[1] == mp
    table = generate(ckpt, prepared, tmp_path / "gen", GenerateParams(n_samples=1, length=8), 0)
    for file in table.file:
        symusic.Score(str(tmp_path / "gen" / file))


@pytest.mark.parametrize(
    "name",
    sorted(
        n
        for n, m in SHIPPED.items()
        if m["train"].get("epochs", 1) and m["family"] not in ("note_gan", "roll_gan")
    ),
)
def test_loss_falls_when_overfitting_one_batch(prepared, name):
    """A few hundred steps on one fixed batch: any working model must fit it."""
    mp = shipped(name)
    torch.manual_seed(0)
    family = load_family(mp.family)
    units = load_units(prepared, "train", mp, 0)
    stream = to_stream(units, make_info(units, mp))
    model = family.build(mp.net, make_info(units, mp))
    x, y = next(windows(stream, min(mp.train.seq_len, 16), 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = family.loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert math.isfinite(losses[0]) and losses[-1] < 0.6 * losses[0], losses[::30]


def test_gans_take_adversarial_steps(prepared):
    for name in ("note_gan", "roll_gan"):
        mp = shipped(name)
        family = load_family(mp.family)
        assert SPECS[mp.family].adversarial and isinstance(family, Adversarial)
        units = load_units(prepared, "train", mp, 0)
        stream = to_stream(units, {})
        model = family.build(mp.net, {})
        optimizers = family.make_optimizers(model, mp.train)
        x, y = next(windows(stream, mp.train.seq_len, 4))
        before = [p.clone() for p in model.parameters()]
        assert math.isfinite(family.train_step(model, x, y, optimizers))
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_training_is_deterministic(prepared, tmp_path):
    for run in ("a", "b"):
        train(
            "chord_lstm",
            shipped("chord_lstm"),
            prepared,
            tmp_path / run / "ckpt.pt",
            tmp_path / f"{run}.csv",
            seed=0,
        )
    a = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_kill_matches_an_uninterrupted_run(prepared, tmp_path, monkeypatch):
    import cadenza.train as trainer

    mp = shipped("chord_lstm", epochs=4)
    train("chord_lstm", mp, prepared, tmp_path / "full" / "ckpt.pt", tmp_path / "full.csv", 0)

    real_save = trainer._save_resume

    def die_after_epoch_2(*args):
        real_save(*args)
        if args[-1].epoch == 2:
            raise KeyboardInterrupt  # the process dies right after epoch 2

    monkeypatch.setattr(trainer, "_save_resume", die_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train("chord_lstm", mp, prepared, tmp_path / "cut" / "ckpt.pt", tmp_path / "cut.csv", 0)
    assert (tmp_path / "cut" / "ckpt.resume.pt").exists()
    monkeypatch.setattr(trainer, "_save_resume", real_save)
    killed = pd.read_csv(tmp_path / "cut.csv")
    summary = train(
        "chord_lstm", mp, prepared, tmp_path / "cut" / "ckpt.pt", tmp_path / "cut.csv", 0
    )
    # the killed process's two epochs are in the summary's time, as their log rows timed them
    assert len(killed) == 2
    assert summary["resumed_seconds"] == pytest.approx(
        (killed["seconds"] + killed["valid_seconds"]).sum()
    )
    assert summary["resumed_seconds"] > 0

    assert not (tmp_path / "cut" / "ckpt.resume.pt").exists()
    full = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=True)
    cut = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=True)
    assert full["epoch"] == cut["epoch"]
    assert all(torch.equal(full["state_dict"][k], cut["state_dict"][k]) for k in full["state_dict"])
    # byte for byte too (issue #18): else DVC sees a changed output after every resume
    assert (tmp_path / "full" / "ckpt.pt").read_bytes() == (
        tmp_path / "cut" / "ckpt.pt"
    ).read_bytes()
    columns = ["epoch", "step", "train_loss", "valid_loss", "lr"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "full.csv")[columns], pd.read_csv(tmp_path / "cut.csv")[columns]
    )


def test_a_resume_file_left_on_other_data_is_discarded(prepared, tmp_path, monkeypatch, caplog):
    """Same params, other prepared data (a `limit` change): the resume file must not be
    used; training starts afresh and ends as a run that never saw it."""
    import cadenza.train as trainer

    mp = shipped("chord_lstm", epochs=2)
    other = tmp_path / "other"
    from cadenza.testing.corpora import write_corpus

    prepare(
        write_corpus(tmp_path / "corpus"),
        ["toy"],
        other,
        PrepareParams(valid_fraction=0.3, test_fraction=0.2),
    )  # other pieces in train
    real_save = trainer._save_resume

    def die_after_epoch_1(*args):
        real_save(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_save_resume", die_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train("chord_lstm", mp, other, tmp_path / "cut" / "ckpt.pt", tmp_path / "cut.csv", 0)
    monkeypatch.setattr(trainer, "_save_resume", real_save)
    with caplog.at_level("WARNING", logger="cadenza.train"):
        train("chord_lstm", mp, prepared, tmp_path / "cut" / "ckpt.pt", tmp_path / "cut.csv", 0)
    assert "left by a run on other prepared data; discarding it" in caplog.text
    train("chord_lstm", mp, prepared, tmp_path / "new" / "ckpt.pt", tmp_path / "new.csv", 0)
    cut = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=True)["state_dict"]
    new = torch.load(tmp_path / "new" / "ckpt.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(cut[k], new[k]) for k in new)


def test_cyclic_learning_rate_is_a_triangle():
    cfg = shipped("pitch_next_lstm").train  # lr 1e-3, lr_min 1e-4, 100 steps up
    assert cyclic_lr(0, cfg) == pytest.approx(1e-4)
    assert cyclic_lr(50, cfg) == pytest.approx(5.5e-4)
    assert cyclic_lr(100, cfg) == pytest.approx(1e-3)
    assert cyclic_lr(200, cfg) == pytest.approx(1e-4)


def test_tampered_or_truncated_checkpoint_is_refused(prepared, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    train("chord_lstm", shipped("chord_lstm", 1), prepared, ckpt, tmp_path / "log.csv", 0)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a cadenza-checkpoint/3 checkpoint"):
        load_checkpoint(foreign)

    class Evil:  # an object that runs code when unpickled must never load
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "cadenza-checkpoint/3", "x": Evil()}, evil)
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(evil)


def test_capped_units_keep_an_even_share_of_every_piece_and_spend_the_budget():
    units = {"a/1": list(range(100)), "b/1": list(range(10)), "b/2": list(range(40))}
    assert cap_units(units, 0) is units
    assert cap_units(units, 150) is units and cap_units(units, 1000) is units  # it all fits
    # by hand: b/1 whole (10), the other 50 split evenly over a/1 and b/2 (25 each)
    capped = cap_units(units, 60, floor=5)
    assert capped == {"a/1": list(range(25)), "b/1": list(range(10)), "b/2": list(range(25))}
    # 149: b/1 whole, b/2 whole (40), a/1 the other 99
    assert [len(u) for u in cap_units(units, 149).values()] == [99, 10, 40]


def test_capped_units_hold_the_cap_with_many_pieces_and_hear_every_source():
    units = {f"{s}/{i:03d}": list(range(50)) for s in ("a", "b", "c") for i in range(100)}
    capped = cap_units(units, 1000, floor=65)  # 300 pieces: 3 units each < one window
    assert sum(map(len, capped.values())) <= 1000
    assert all(len(u) >= 65 or len(u) == 50 for u in capped.values())
    assert len(capped) == 1000 // 65 and {pid[0] for pid in capped} == {"a", "b", "c"}
    assert list(capped) == sorted(capped)


class _Successor(torch.nn.Module):
    """A 'model' that knows the rule of the test stream: the next id is id % 19 + 1."""

    def forward(self, x: torch.Tensor, state=None):
        return torch.nn.functional.one_hot(x % 19 + 1, 20).float() * 10, state


def test_batched_test_scoring_scores_every_target_once_and_aligned():
    """`stream_logits` cuts the stream into rows scored side by side: every target comes out
    exactly once (padding is id 0, which scoring ignores), each beside its own logits."""
    ids = 1 + torch.arange(1000) % 19  # 1, 2, ..., 19, 1, 2, ...
    for rows in (1, 3, 64):
        pairs = list(stream_logits(_Successor(), ids, 10, "cpu", rows))
        targets = torch.cat([y for _, y in pairs])
        predicted = torch.cat([logits.argmax(-1) for logits, _ in pairs])
        scored = targets != 0
        assert torch.equal(targets[scored].sort().values, ids[1:].sort().values), rows
        assert torch.equal(predicted[scored], targets[scored]), rows


def test_too_little_training_data_is_a_clear_error_not_a_missing_checkpoint(prepared, tmp_path):
    mp = shipped("chord_lstm", 1, seq_len=100_000)  # the bound

    with pytest.raises(
        ValueError, match="chord_lstm: the training split gives .* less than one window"
    ):
        train("chord_lstm", mp, prepared, tmp_path / "ckpt.pt", tmp_path / "log.csv", 0)


def test_stride_one_gives_every_window_as_keras_epochs_do():
    """Papers 001 and 004 train on every window (stride 1), seq_len times the windows of
    the default non-overlapping epoch; each y is its x moved by one step."""
    from cadenza.batches import epoch_batches

    stream = torch.arange(12)
    every = [x for xb, _ in windows(stream, 3, 100, stride=1) for x in xb.tolist()]
    assert every == [[s, s + 1, s + 2] for s in range(9)]  # starts 0..8: 8 + 3 < 12
    default = [x for xb, _ in windows(stream, 3, 100) for x in xb.tolist()]
    assert default == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    cfg = TrainParams(seq_len=3, batch_size=4, stride=1)
    assert epoch_batches(12, cfg) == 3  # 9 windows in batches of 4
    assert epoch_batches(12, TrainParams(seq_len=3, batch_size=4)) == 1
    with pytest.raises(ParamsError, match=r"train\.stride: must be in \[0, seq_len\]"):
        from_dict(TrainParams, {"seq_len": 3, "stride": 4}, "train")


def test_last_targets_train_and_score_one_target_per_window():
    """`train.targets: last` (paper 001's many-to-one Keras model): every target but a
    window's last is `<pad>`, so the loss is the cross-entropy of the last positions alone;
    `window_logits` scores every window (stride 1) by its last position, from a zero state."""
    from cadenza.batches import window_logits
    from cadenza.models.specs import TokenLMNet
    from cadenza.models.token_lm import TokenLM, loss

    stream = torch.arange(3, 15)  # ids 3..14: no <pad> among them
    ((x, y),) = windows(stream, 4, 100, stride=1, last_only=True)
    assert x.tolist()[0] == [3, 4, 5, 6] and len(x) == 8  # starts 0..7: 7 + 4 < 12
    assert (y[:, :-1] == 0).all() and y[:, -1].tolist() == list(range(7, 15))
    torch.manual_seed(0)
    model = TokenLM(16, TokenLMNet(cell="lstm", layers=1, embedding=4, hidden=8, dropout=0.0))
    logits, _ = model(x)
    by_hand = torch.nn.functional.cross_entropy(logits[:, -1], y[:, -1])
    assert torch.allclose(loss(model, x, y), by_hand)
    scored = list(window_logits(model, stream, 4, "cpu", batch=3))
    assert [len(t) for _, t in scored] == [3, 3, 2]
    assert torch.cat([t for _, t in scored]).tolist() == list(range(7, 15))
    assert torch.allclose(torch.cat([lg for lg, _ in scored]), logits[:, -1], atol=1e-6)


def test_song_gap_joins_the_pieces_with_slashes_as_paper_001s_code():
    """`tokens.song_gap: 3`: `/` joins the vocabulary right after the specials (the others
    keep their ids order) and 3 of them follow each piece instead of `<eos>`."""
    units = {"a": ["60", "_", "r"], "b": ["62"]}
    plain = make_info(units, from_dict(ModelParams, MELODY, "m"))
    gapped = from_dict(ModelParams, MELODY | {"tokens": {"scheme": "melody", "song_gap": 3}}, "m")
    info = make_info(units, gapped)
    assert info["vocab"] == plain["vocab"][:3] + ["/"] + plain["vocab"][3:] and info["gap"] == 3
    assert info["counts"][3] == 6  # 3 after each of the 2 pieces
    slash, eos = 3, info["vocab"].index("<eos>")
    assert to_stream(units, info).tolist().count(slash) == 6 and eos not in to_stream(units, info)
    assert to_stream(units, plain).tolist().count(plain["vocab"].index("<eos>")) == 2
    with pytest.raises(ParamsError, match=r"m\.tokens\.song_gap: must be in \[0, 100000\]"):
        from_dict(ModelParams, MELODY | {"tokens": {"scheme": "melody", "song_gap": -1}}, "m")
    with pytest.raises(ParamsError, match=r"m\.train\.targets: 'last' needs a family that reads"):
        from_dict(ModelParams, {"family": "roll_lstm", "train": {"targets": "last"}}, "m")


MELODY = {"family": "token_lm", "tokens": {"scheme": "melody"}}


def test_a_paper_001_model_samples_from_windows_after_the_gap():
    """Sampling a `song_gap` + `targets: last` model feeds what it trained on: the `/` gap,
    then the prompt, and every step the last `seq_len` tokens from a fresh state; it never
    draws a `/`."""
    from cadenza.models.specs import TokenLMNet
    from cadenza.models.token_lm import TokenLM, sample

    mp = from_dict(
        ModelParams,
        {
            "family": "token_lm",
            "tokens": {"scheme": "melody", "song_gap": 3},
            "train": {"seq_len": 4, "targets": "last"},
        },
        "m",
    )
    info = make_info({"a": ["60", "_", "62", "r"]}, mp)
    torch.manual_seed(0)
    model = TokenLM(len(info["vocab"]), TokenLMNet(cell="lstm", embedding=4, hidden=8))
    seen = []
    model.register_forward_hook(lambda _m, args, _out: seen.append(args[0].tolist()[0]))
    gen = GenerateParams(length=6, temperature=5.0)
    sample(model, mp, info, ["60", "_"], gen, torch.Generator().manual_seed(0))
    slash, sixty, hold = (info["vocab"].index(t) for t in ("/", "60", "_"))
    assert seen[0] == [slash, slash, sixty, hold]  # 3 `/` + the prompt, cut to 4
    assert len(seen) == 7 and all(len(ids) == 4 for ids in seen)  # the prompt, 6 draws
    drawn = [ids[-1] for ids in seen[1:]]
    assert slash not in drawn
    assert all(a[1:] == b[:-1] for a, b in zip(seen[:-1], seen[1:], strict=True))  # slides


def test_a_resume_file_from_before_a_new_param_still_resumes():
    """A key added to the schema since a resume file was written (here `train.targets` and
    `tokens.song_gap`, whose defaults compute what the older code did) does not turn the
    file into one of "other params" (the trainer's and the benchmark's resume files alike);
    an unreadable params entry matches nothing."""
    from cadenza.config import saved_model_params

    mp = from_dict(ModelParams, MELODY, "m")
    older = dataclasses.asdict(mp)
    del older["train"]["targets"], older["tokens"]["song_gap"]
    assert saved_model_params(older) == dataclasses.asdict(mp)
    assert saved_model_params({"family": "nope"}) is None and saved_model_params(None) is None


@pytest.mark.parametrize(
    "monitor, epochs_run, kept", [("valid", 3, [1]), ("train", 6, [1, 2, 3, 4, 5, 6])]
)
def test_early_stopping_watches_the_monitored_loss(monitor, epochs_run, kept):
    """Training loss falling, valid loss rising after epoch 1 (a few files overfit): on
    the valid loss, patience 2 stops after epoch 3 and keeps epoch 1; on the training
    loss (Keras' monitor='loss', paper 004's tutorial) every epoch improves."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters())
    train_losses = iter([1.0, 0.8, 0.6, 0.5, 0.4, 0.3])
    valid_losses = iter([1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    loop = Loop(
        batches=lambda: [()],
        n_batches=1,
        step=lambda _: (next(train_losses), 1),
        validate=lambda _: next(valid_losses),
        unit="notes",
        monitor=monitor,
    )
    improved_epochs: list[int] = []

    def on_epoch(progress: Progress, valid: float, improved: bool) -> None:
        if improved:
            improved_epochs.append(progress.epoch)

    cfg = TrainParams(epochs=6, patience=2, schedule="constant")  # `train` passes cfg.monitor
    progress = fit("test", model, optimizer, cfg, loop, Progress(), on_epoch)
    assert progress.epoch == epochs_run
    assert improved_epochs == kept
    assert [row["valid_loss"] for row in progress.rows][:2] == [1.0, 1.1]  # the log is unchanged
