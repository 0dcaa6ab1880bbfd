import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import cadenza.config as config
from cadenza.benchmark import BenchmarkParams
from cadenza.config import (
    ModelParams,
    ParamsError,
    from_dict,
    load_params,
    load_yaml,
    load_yaml_as,
)
from cadenza.models import SPECS, Adversarial, Family, FrameScorer, InfoMaker, load_family
from cadenza.testing.checkout import ROOT


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert "bach_chorales" in params.sources
    assert {"chord_lstm", "pitch_next_lstm"} <= set(params.models)
    assert params.models["chord_lstm"].net.layers == 2  # paper 003: 2-layer LSTM


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["models"]["chord_lstm"]["train"].update(epohcs=3),
            "models.chord_lstm.train.epohcs: unknown key",
        ),
        (
            lambda d: d["models"]["chord_lstm"]["train"].update(lr="fast"),
            "models.chord_lstm.train.lr: expected a number, got str 'fast'",
        ),
        (
            lambda d: d["models"]["chord_lstm"]["train"].update(epochs=2.5),
            "models.chord_lstm.train.epochs: expected an integer",
        ),
        (
            lambda d: d["models"]["chord_lstm"]["train"].update(batch_size=-4),
            "models.chord_lstm.train.batch_size: must be >= 1",
        ),
        (
            lambda d: d["models"]["pitch_next_lstm"]["tokens"].update(scheme="words"),
            "models.pitch_next_lstm.tokens.scheme: must be one of ['chord', 'pitch_next'",
        ),
        (
            lambda d: d["models"]["chord_lstm"]["net"].update(hiden=3),
            "models.chord_lstm.net.hiden: unknown key (allowed: cell, layers",
        ),
        (
            lambda d: d["models"]["roll_lstm"]["net"].update(hidden=0),
            "models.roll_lstm.net.hidden: must be >= 1",
        ),
        (
            lambda d: d["models"]["chord_lstm"].update(family="gpt5"),
            "models.chord_lstm.family: unknown model family 'gpt5'",
        ),
        (
            lambda d: d["models"]["pitch_next_lstm"]["train"].update(optimizer="rmsprop"),
            "models.pitch_next_lstm.train.optimizer: must be one of ['adam', 'sgd', 'adagrad']",
        ),
        (lambda d: d.update(profile="huge"), "profile: must be one of the profiles"),
        (lambda d: d["prepare"].update(transpose="yes"), "prepare.transpose: expected true/false"),
        (lambda d: d.update(sources={}), "sources: select at least one source"),
        (lambda d: d["sources"].update(nowhere={}), "sources.nowhere: unknown source"),
        (
            lambda d: d["models"]["chord_lstm"].pop("tokens"),
            "models.chord_lstm.tokens: family token_lm reads tokens: give a token scheme",
        ),
        (lambda d: d.update(generat={}), "generat: unknown key"),
        (
            lambda d: d["models"]["roll_lstm"].update(tokens={"scheme": "chord"}),
            "models.roll_lstm.tokens: family roll_lstm reads frames, not tokens: remove the block",
        ),
        (
            lambda d: d["flow"]["timeout_s"].update(trian=60),
            "flow.timeout_s.trian: unknown stage kind (one of: benchmark, compare, default",
        ),
        (
            lambda d: d["models"]["chord_lstm"]["train"].update(schedule="cyclic", lr=5e-5),
            "models.chord_lstm.train.lr_min: must be <= lr (the cyclic schedule",
        ),
        (  # a source option its layout does not read would be silently ignored
            lambda d: d["sources"].update(bach_chorales={"subset": "bwv1"}),
            "sources.bach_chorales.subset: bach_chorales does not read it (only: lpd_cleansed,",
        ),
        (
            lambda d: d["sources"].update(maestro_v2={"metadata": "m.csv"}),
            "sources.maestro_v2.metadata: maestro_v2 does not read it (only: midi_dir)",
        ),
        (  # music21 ships the chorales: a mirror for them would be ignored
            lambda d: d["sources"].update(bach_chorales={"url": "https://example.org/x.zip"}),
            "sources.bach_chorales.url: bach_chorales does not read it (only: ",
        ),
        (
            lambda d: d["sources"].update(maestro_v2={"delay_s": 5.0}),
            "sources.maestro_v2.delay_s: maestro_v2 does not read it (only: piano_midi_de)",
        ),
        (  # a model name becomes a stage name, a folder and a word of a shell command
            lambda d: d["models"].update({"x;touch PWNED;true": d["models"]["chord_lstm"]}),
            "models.x;touch PWNED;true: a model name is letters, digits, '_' and '-'",
        ),
        (
            lambda d: d["models"].update({"my model": d["models"]["chord_lstm"]}),
            "models.my model: a model name is letters",
        ),
        (
            lambda d: d["models"]["folk_lstm"].update(prefer_sources=["esen"]),
            "models.folk_lstm.prefer_sources: unknown source 'esen' (known: ",
        ),
        (
            lambda d: d["runner"].update(kind="dask", dask_address="not a url"),
            "runner.dask_address: 'not a url' is no scheduler address; expected",
        ),
        (  # what fetch would refuse, refused before any stage runs
            lambda d: d["sources"].update(midi_dir={}),
            "sources.midi_dir.url: not set; expected a local folder of .mid/.midi files",
        ),
        (
            lambda d: d["sources"].update(midi_dir={"url": "https://example.org/midi/"}),
            "sources.midi_dir.url: https://example.org/midi/; expected a local folder",
        ),
        (
            lambda d: d["sources"].update(midi_dir={"url": "x", "columns": {"file": "path"}}),
            "sources.midi_dir.columns: given without sources.midi_dir.metadata",
        ),
    ],
)
def test_bad_params_name_the_key(tmp_path, mutate, message):
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, mutate))
    assert message in str(err.value)


def test_lr_min_binds_only_the_cyclic_schedule(tmp_path):
    """A low lr on another schedule loads: lr_min is never read there, and an error naming
    it would name a key the user never set."""
    low = load_params(
        _write(tmp_path, lambda d: d["models"]["chord_lstm"]["train"].update(lr=5e-5))
    )
    assert low.models["chord_lstm"].train.schedule != "cyclic"
    assert low.models["chord_lstm"].train.lr == 5e-5


def test_dataclasses_are_frozen():
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(AttributeError):
        params.generate.n_samples = 3  # type: ignore[misc]


def test_from_dict_accepts_int_for_float():
    mp = from_dict(
        ModelParams, {"family": "token_lm", "tokens": {"scheme": "chord"}, "train": {"lr": 1}}, "m"
    )
    assert mp.train.lr == 1.0 and isinstance(mp.train.lr, float)


def test_cli_fails_fast_and_names_the_param(tmp_path):
    bad = _write(tmp_path, lambda d: d["sources"]["bach_chorales"].update(limt=3))
    out = tmp_path / "raw"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cadenza.cli",
            "fetch",
            "bach_chorales",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
            "--params",
            str(bad),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "sources.bach_chorales.limt: unknown key" in proc.stderr
    assert not out.exists()  # no work was done


# ------------------------------------------------------------------ issue 18, item 7: bounds
# The probe's examples: each passed validation before and failed late (a traceback after the
# work) or silently (int32-wrapped shards). Each must now stop in `load_params`, naming the
# param and the bound.


def _set(path: tuple, value):
    def mutate(data: dict) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


CL = ("models", "chord_lstm")


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("prepare", "steps_per_beat"), 1_000_000_000, "prepare.steps_per_beat: must be <= 96"),
        (("seed",), -5, "seed: must be in [0, 2**32 - 1 = 4294967295]"),
        (("seed",), 2**32, "seed: must be in [0, 2**32 - 1 = 4294967295]"),
        ((*CL, "net", "hidden"), 1_000_000_000, "models.chord_lstm.net.hidden: must be <= 16384"),
        ((*CL, "net", "layers"), 1000, "models.chord_lstm.net.layers: must be <= 64"),
        ((*CL, "net", "embedding"), 10**7, "models.chord_lstm.net.embedding: must be <= 16384"),
        (
            ("models", "transformer", "net"),
            {"heads": 8192, "d_model": 16384},
            "models.transformer.net.heads: must be <= 256",
        ),
        (
            ("models", "transformer", "net", "max_len"),
            10**7,
            "models.transformer.net.max_len: must be <= 100000",
        ),
        (("models", "note_gan", "net", "lr"), 1e9, "models.note_gan.net.lr: must be <= 10"),
        (("prepare", "min_notes"), 10**18, "prepare.min_notes: must be <= 1000000"),
        ((*CL, "train", "seq_len"), 10**6, "models.chord_lstm.train.seq_len: must be <= 100000"),
        (
            (*CL, "train", "batch_size"),
            10**6,
            "models.chord_lstm.train.batch_size: must be <= 65536",
        ),
        ((*CL, "train", "lr"), 1e9, "models.chord_lstm.train.lr: must be <= 10"),
        (
            (*CL, "train", "max_batches"),
            10**30,
            "models.chord_lstm.train.max_batches: must fit in a 64-bit integer",
        ),
        (
            (*CL, "tokens", "max_polyphony"),
            1000,
            "models.chord_lstm.tokens.max_polyphony: must be <= 128",
        ),
        (
            ("models", "event_lstm", "tokens", "ticks_per_beat"),
            40_000,
            "models.event_lstm.tokens.ticks_per_beat: must be <= 32767",
        ),
        (("generate", "length"), 10**9, "generate.length: must be <= 1000000"),
        (("generate", "temperature"), 1e-300, "generate.temperature: must be >= 0.001"),
        (("generate", "bpm"), 1, "generate.bpm: must be in [4, 1000]"),
        (("evaluate", "steps_per_beat"), 480, "evaluate.steps_per_beat: must be <= 96"),
        (("listen", "clip_seconds"), 1e6, "listen.clip_seconds: must be <= 600"),
        (("runner", "workers"), 10**5, "runner.workers: must be <= 256"),
        (
            ("sources", "bach_chorales", "retries"),
            100,
            "sources.bach_chorales.retries: must be <= 10",
        ),
        (
            ("profiles", "quick", "max_test_units"),
            2**40,
            "profiles.quick.max_test_units: must be <=",
        ),
    ],
)
def test_values_that_blow_up_memory_or_a_dtype_are_refused_with_the_bound(
    tmp_path, path, value, message
):
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, _set(path, value)))
    assert message in str(err.value)


def test_batch_size_times_seq_len_is_bounded(tmp_path):
    """Each within its own bound, together 2**30 positions in one batch: refused."""

    def mutate(data: dict) -> None:
        data["models"]["chord_lstm"]["train"].update(batch_size=2**15, seq_len=2**15)

    with pytest.raises(ParamsError, match=r"train\.seq_len: batch_size \* seq_len must be <= "):
        load_params(_write(tmp_path, mutate))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "    net: {cell: lstm, layers: 2, embedding: 128, hidden: 1e9}",
            "models.chord_lstm.net.hidden: expected an integer, got str '1e9' "
            "(YAML reads '1e9' as text, not a number: write 1000000000)",
        ),
        (
            "    net: {cell: lstm, layers: 2, embedding: 128, hidden: 1.0e+9}",
            "models.chord_lstm.net.hidden: expected an integer, got float 1000000000.0 "
            "(write it as an integer: 1000000000)",
        ),
        (
            "    train: {lr: 1e-3}",
            "models.chord_lstm.train.lr: expected a number, got str '1e-3' "
            "(YAML reads '1e-3' as text, not a number: write 0.001)",
        ),
    ],
)
def test_exponent_notation_is_a_clear_type_error(tmp_path, line, message):
    """PyYAML reads `1e9` as a string and `1.0e+9` as a float: neither is an integer, and the
    message says how to write it."""
    text = (
        "seed: 0\nsources: {bach_chorales: {}}\nmodels:\n  chord_lstm:\n"
        "    family: token_lm\n    tokens: {scheme: chord}\n" + line + "\n"
    )
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == message


def test_min_notes_1e18_as_written_by_the_probe_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text().replace("min_notes: 8", "min_notes: 1e18"))
    with pytest.raises(ParamsError, match=r"^prepare\.min_notes: expected an integer, got str"):
        load_params(path)


@pytest.mark.parametrize(
    "family",
    sorted(
        name
        for name, spec in SPECS.items()
        if any(f.type in (int, "int") for f in dataclasses.fields(spec.net))
    ),
)
def test_every_integer_of_every_model_net_has_an_upper_bound(family):
    """Not only the fields named in NET_INT_MAX: a family's new int field is bounded too."""
    net = SPECS[family].net
    ints = [f.name for f in dataclasses.fields(net) if f.type in (int, "int")]
    tokens = {"scheme": "chord"} if SPECS[family].kind == "tokens" else None
    for name in ints:
        # the transformer's own check wants d_model a multiple of 2 x heads: keep it so
        net_values = {name: 2**40, **({"d_model": 2**41} if name == "heads" else {})}
        with pytest.raises(ParamsError, match=rf"^m\.net\.{name}: must be (<=|in \[)"):
            from_dict(ModelParams, {"family": family, "tokens": tokens, "net": net_values}, "m")


@pytest.mark.parametrize(
    "section",
    [
        "SourceParams",
        "PrepareParams",
        "RunnerParams",
        "TokenParams",
        "TrainParams",
        "ProfileParams",
        "GenerateParams",
        "EvaluateParams",
        "ListenParams",
    ],
)
def test_every_integer_param_has_an_upper_bound(section):
    """2**40 fits int64 but sizes nothing sanely: every int field refuses it (max_extract_mb
    is left to the archive-extraction change, which owns that field and its bound)."""
    cls = getattr(config, section)
    required = {"scheme": "chord"} if cls is config.TokenParams else {}
    ints = [
        f.name
        for f in dataclasses.fields(cls)
        if f.type in (int, "int") and f.name != "max_extract_mb"
    ]
    assert ints
    for name in ints:
        with pytest.raises(ParamsError, match=rf"^s\.{name}: (.* )?must be (<=|in \[)"):
            from_dict(cls, {**required, name: 2**40}, "s")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("g" * 64, False),
        ("z" * 64, False),
        ("0" * 63 + "x", False),
        ("ab" * 31, False),
        ("a" * 65, False),
        ("0123456789abcdef" * 4, True),
        ("0123456789ABCDEF" * 4, True),
        ("", True),
    ],
)
def test_sha256_must_be_empty_or_64_hex_digits(tmp_path, value, ok):
    path = _write(tmp_path, lambda d: d["sources"].update(maestro_v2={"sha256": value}))
    if ok:
        assert load_params(path).sources["maestro_v2"].sha256 == value
        return
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert "sources.maestro_v2.sha256: must be empty or exactly 64 hex digits" in str(err.value)


# ------------------------------------------------------------------ duplicate YAML keys


def test_duplicate_top_level_key_is_refused_naming_key_and_lines(tmp_path):
    text = (ROOT / "params.yaml").read_text() + "\nseed: 7\n"
    path = tmp_path / "params.yaml"
    path.write_text(text)
    first = text.splitlines().index("seed: 0") + 1
    again = len(text.splitlines())
    with pytest.raises(ParamsError) as err:
        load_params(path)
    assert str(err.value) == (
        f"{path}: duplicate key 'seed' on line {again} (first given on line {first}); "
        "YAML would silently keep only the last value"
    )


@pytest.mark.parametrize(
    ("text", "key", "again", "first"),
    [
        ("a:\n  b:\n    lr: 0.1\n    epochs: 3\n    lr: 0.2\n", "lr", 5, 3),  # block, nested
        ("a: {b: {lr: 0.1, lr: 0.2}}\n", "lr", 1, 1),  # flow, nested
        ("a:\n  - {x: 1}\n  - {y: 1, y: 2}\n", "y", 3, 3),  # inside a list
        ("a: 1\ntrue: 2\nyes: 3\n", True, 3, 2),  # two spellings of one YAML 1.1 key
    ],
)
def test_duplicate_nested_key_is_refused(tmp_path, text, key, again, first):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_yaml(path)
    assert f"{path}: duplicate key {key!r} on line {again} (first given on line {first})" in str(
        err.value
    )


def test_load_yaml_reads_what_safe_load_reads_and_allows_merge_overrides(tmp_path):
    """No false alarms: the shipped YAML files load as before, and a `<<:` merge may still be
    overridden by the mapping's own key, as YAML intends."""
    for name in ("params.yaml", "sweeps.yaml", "bench/bl/params.yaml", "dvc.yaml"):
        assert load_yaml(ROOT / name) == yaml.safe_load((ROOT / name).read_text()), name
    path = tmp_path / "m.yaml"
    path.write_text("base: &b {lr: 0.1, epochs: 3}\nrun: {<<: *b, lr: 0.2}\n")
    assert load_yaml(path)["run"] == {"lr": 0.2, "epochs": 3}


def test_benchmark_params_still_validate():
    params = load_yaml_as(ROOT / "bench" / "bl" / "params.yaml", BenchmarkParams)
    assert params.models["roll_lstm"].net.pitches == 88


@pytest.mark.parametrize("family", sorted(SPECS))
def test_each_family_module_keeps_the_contract_its_spec_declares(family):
    """The spec is what callers ask; the module must define exactly the abilities it claims."""
    spec, module = SPECS[family], load_family(family)
    assert isinstance(module, Family)
    assert isinstance(module, Adversarial) == spec.adversarial
    assert isinstance(module, FrameScorer) == spec.scores_frames
    assert isinstance(module, InfoMaker) == spec.makes_info
    assert not hasattr(module, "Net"), "the Net lives in the spec (cadenza.models.specs)"
    model = module.build(
        spec.net(), {"vocab": ["<pad>", "<unk>", "<eos>", "a"], "counts": [1, 1, 1, 1]}
    )
    pitch_autoregressive = hasattr(model, "time_context") and hasattr(model, "decode")
    assert pitch_autoregressive == spec.pitch_autoregressive
    if spec.embeds_pitches:
        assert isinstance(model.pitch_embedding, torch.nn.Linear)
