"""Fuzzing params.yaml (issue #8): wrong types, unknown keys, negative sizes, empty sources.

Each bad file must give exactly one clear error line that names the key, from `cadenza check`
and from a stage command, before any work starts (the stage's output is never created).
The commands run in-process through typer's runner: the real CLI code, without paying a
Python start-up per case.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cadenza.cli import app
from cadenza.config import ParamsError, load_params
from cadenza.testing.checkout import ROOT

BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
M = ("models", "chord_lstm")
S = ("sources", "bach_chorales")

# (path to the key, new value or DELETE, the key the error must name, what it must say)
DELETE = object()
CASES = [
    (("seed",), "abc", "seed", "expected an integer"),
    (("seed",), True, "seed", "expected an integer, got bool True"),
    (("seed",), DELETE, "seed", "missing required key"),
    (("sources",), [], "sources", "expected a mapping, got list []"),
    (("sources",), {}, "sources", "select at least one source"),
    (("sources",), None, "sources", "expected a mapping"),
    (("sources",), ["bach_chorales"], "sources", "expected a mapping"),
    (("sources", "nowhere"), {}, "sources.nowhere", "unknown source"),
    (S, None, "sources.bach_chorales", "expected a mapping"),
    ((*S, "limit"), -1, "sources.bach_chorales.limit", "must be >= 0"),
    ((*S, "limit"), "10", "sources.bach_chorales.limit", "expected an integer"),
    ((*S, "workers"), 0, "sources.bach_chorales.workers", "must be >= 1"),
    ((*S, "max_extract_mb"), -5, "sources.bach_chorales.max_extract_mb", "must be >= 1"),
    ((*S, "sha256"), "abc", "sources.bach_chorales.sha256", "64 hex digits"),
    ((*S, "retries"), -1, "sources.bach_chorales.retries", "must be >= 0"),
    ((*S, "delay_s"), float("nan"), "sources.bach_chorales.delay_s", "finite"),
    ((*S, "limt"), 3, "sources.bach_chorales.limt", "unknown key"),
    (("prepare", "steps_per_beat"), -4, "prepare.steps_per_beat", "must be >= 1"),
    (("prepare", "steps_per_beat"), 2.5, "prepare.steps_per_beat", "expected an integer"),
    (("prepare", "test_fraction"), 1.5, "prepare.test_fraction", "must be in (0, 1)"),
    (("prepare", "valid_fraction"), -0.1, "prepare.valid_fraction", "must be in [0, 1)"),
    (("prepare", "min_notes"), 0, "prepare.min_notes", "must be >= 1"),
    (("prepare", "transpose"), "yes", "prepare.transpose", "expected true/false"),
    (("prepare", "bogus"), 1, "prepare.bogus", "unknown key"),
    (("prepare",), [1, 2], "prepare", "expected a mapping"),
    (("models",), {}, "models", "list at least one model"),
    (("models",), [], "models", "expected a mapping"),
    ((*M,), None, "models.chord_lstm", "expected a mapping"),
    ((*M, "family"), DELETE, "models.chord_lstm.family", "missing required key"),
    ((*M, "train"), None, "models.chord_lstm.train", "expected a mapping"),
    ((*M, "train", "batch_size"), -1, "models.chord_lstm.train.batch_size", "must be >= 1"),
    ((*M, "train", "seq_len"), 0, "models.chord_lstm.train.seq_len", "must be >= 1"),
    ((*M, "train", "lr"), -0.1, "models.chord_lstm.train.lr", "must be > 0"),
    ((*M, "train", "lr"), float("inf"), "models.chord_lstm.train.lr", "finite"),
    ((*M, "train", "lr"), float("nan"), "models.chord_lstm.train.lr", "finite"),
    ((*M, "train", "epochs"), -3, "models.chord_lstm.train.epochs", "must be >= 0"),
    ((*M, "train", "epochs"), True, "models.chord_lstm.train.epochs", "expected an integer"),
    ((*M, "train", "max_batches"), -1, "models.chord_lstm.train.max_batches", "must be >= 0"),
    ((*M, "net", "hidden"), -3, "models.chord_lstm.net.hidden", "must be >= 1"),
    ((*M, "net", "layers"), "two", "models.chord_lstm.net.layers", "expected an integer"),
    ((*M, "tokens", "max_polyphony"), 0, "models.chord_lstm.tokens.max_polyphony", "must be >= 1"),
    ((*M, "prefer_sources"), "essen", "models.chord_lstm.prefer_sources", "expected a list"),
    ((*M, "prefer_sources"), [3], "models.chord_lstm.prefer_sources[0]", "expected a string"),
    (("generate", "n_samples"), -1, "generate.n_samples", "must be >= 1"),
    (("generate", "temperature"), 0, "generate.temperature", "must be > 0"),
    (("generate", "top_k"), -1, "generate.top_k", "must be >= 0"),
    (("evaluate", "steps_per_beat"), 0, "evaluate.steps_per_beat", "must be >= 1"),
    (("profiles", "quick", "max_epochs"), -1, "profiles.quick.max_epochs", "must be >= 0"),
    (("profile",), 3, "profile", "expected a string"),
    (("profile",), "huge", "profile", "must be one of the profiles"),
    (("extra",), 1, "extra", "unknown key"),
    # issue 18: accepted before, then failed late (a traceback) or silently (int32 wrap)
    (("seed",), -5, "seed", "must be in [0, 2**32 - 1 = 4294967295]"),
    (("prepare", "steps_per_beat"), 1_000_000_000, "prepare.steps_per_beat", "must be <= 96"),
    (("prepare", "min_notes"), 10**18, "prepare.min_notes", "must be <= 1000000"),
    ((*M, "net", "hidden"), 1_000_000_000, "models.chord_lstm.net.hidden", "must be <= 16384"),
    (
        (*M, "net", "hidden"),
        "1e9",
        "models.chord_lstm.net.hidden",
        "expected an integer, got str '1e9' (YAML reads '1e9' as text",
    ),
    ((*M, "train", "lr"), 1e9, "models.chord_lstm.train.lr", "must be <= 10"),
    (
        (*S, "sha256"),
        "g" * 64,
        "sources.bach_chorales.sha256",
        "must be empty or exactly 64 hex digits",
    ),
]


def _edit(data: dict, path: tuple, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


def _cli(tmp_path: Path, text: str) -> tuple[int, list[str], Path]:
    """Run `cadenza check` and `cadenza prepare` on the file; both must agree."""
    params = tmp_path / "params.yaml"
    params.write_text(text)
    runner = CliRunner()
    check = runner.invoke(app, ["check", "--params", str(params)])
    out = tmp_path / "prepared"
    stage = runner.invoke(
        app, ["prepare", "--raw", str(tmp_path / "raw"), "--out", str(out), "--params", str(params)]
    )
    assert stage.exit_code == check.exit_code and stage.output == check.output
    assert not out.exists()  # no work started
    return check.exit_code, check.output.strip().splitlines(), out


@pytest.mark.parametrize(
    ("path", "value", "key", "says"), CASES, ids=[f"{'.'.join(c[0])}={c[1]!r}"[:60] for c in CASES]
)
def test_each_bad_param_gives_one_error_naming_the_key(tmp_path, path, value, key, says):
    code, lines, _ = _cli(tmp_path, yaml.safe_dump(_edit(BASE, path, value)))
    assert code == 2
    assert len(lines) == 1, lines  # one clear error, no traceback
    assert lines[0].startswith(f"error: bad param: {key}: "), lines[0]
    assert says in lines[0]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("seed: [1\n", "not valid YAML"),
        ("- just\n- a list\n", "params: expected a mapping, got list"),
        ("\x00\x01binary", "not valid YAML"),
        ("seed: 0\nseed: 1\n", "duplicate key 'seed' on line 2 (first given on line 1)"),
        (
            "seed: 0\nprepare:\n  min_notes: 8\n  min_notes: 9\n",
            "duplicate key 'min_notes' on line 4 (first given on line 3)",
        ),
    ],
)
def test_a_file_that_is_not_a_params_mapping_is_one_clear_error(tmp_path, text, says):
    code, lines, _ = _cli(tmp_path, text)
    assert code == 2 and len(lines) == 1 and says in lines[0], lines


def test_a_missing_params_file_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["check", "--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: bad param: {tmp_path / 'nope.yaml'}: no such file"
    ]


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    yield prefix


LEAVES = [p for p in _paths(BASE) if p]
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(picks=st.lists(st.tuples(st.integers(0, len(LEAVES) - 1), JUNK), min_size=1, max_size=3))
def test_random_junk_in_any_key_is_valid_or_one_error_naming_a_key(tmp_path, picks):
    """Any value in any key: either the file is valid, or one ParamsError names a key that
    exists in the file (or a child of one)."""
    data = BASE
    for index, value in picks:
        path = LEAVES[index]
        try:
            data = _edit(data, path, value)
        except (KeyError, TypeError):  # an earlier pick replaced the parent
            continue
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    try:
        load_params(params)
    except ParamsError as err:
        message = str(err)
        assert "\n" not in message.split(": ")[0]
        named = message.split(": ")[0]
        assert named, message
        assert named.split(".")[0].split("[")[0] in data or named == "params", message
