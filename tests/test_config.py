import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cadenza.config import ModelParams, ParamsError, from_dict, load_params

from .conftest import ROOT


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
    assert params.models["chord_lstm"].net.layers == 2  # seed 003: 2-layer LSTM


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["models"]["chord_lstm"]["train"].update(epohcs=3),
     "models.chord_lstm.train.epohcs: unknown key"),
    (lambda d: d["models"]["chord_lstm"]["train"].update(lr="fast"),
     "models.chord_lstm.train.lr: expected a number, got str 'fast'"),
    (lambda d: d["models"]["chord_lstm"]["train"].update(epochs=2.5),
     "models.chord_lstm.train.epochs: expected an integer"),
    (lambda d: d["models"]["chord_lstm"]["train"].update(batch_size=-4),
     "models.chord_lstm.train.batch_size: must be >= 1"),
    (lambda d: d["models"]["pitch_next_lstm"]["tokens"].update(scheme="words"),
     "models.pitch_next_lstm.tokens.scheme: must be one of ['chord', 'pitch_next'"),
    (lambda d: d["models"]["chord_lstm"]["net"].update(hiden=3),
     "models.chord_lstm.net.hiden: unknown key (allowed: cell, layers"),
    (lambda d: d["models"]["roll_lstm"]["net"].update(hidden=0),
     "models.roll_lstm.net.hidden: must be >= 1"),
    (lambda d: d["models"]["chord_lstm"].update(family="gpt5"),
     "models.chord_lstm.family: unknown model family 'gpt5'"),
    (lambda d: d["models"]["pitch_next_lstm"]["train"].update(optimizer="rmsprop"),
     "models.pitch_next_lstm.train.optimizer: must be one of ['adam', 'sgd', 'adagrad']"),
    (lambda d: d.update(profile="huge"), "profile: must be one of the profiles"),
    (lambda d: d["prepare"].update(transpose="yes"), "prepare.transpose: expected true/false"),
    (lambda d: d.update(sources={}), "sources: select at least one source"),
    (lambda d: d["sources"].update(nowhere={}), "sources.nowhere: unknown source"),
    (lambda d: d["models"]["chord_lstm"].pop("tokens"),
     "models.chord_lstm.tokens: family token_lm reads tokens: give a token scheme"),
    (lambda d: d.update(generat={}), "generat: unknown key"),
])
def test_bad_params_name_the_key(tmp_path, mutate, message):
    with pytest.raises(ParamsError) as err:
        load_params(_write(tmp_path, mutate))
    assert message in str(err.value)


def test_dataclasses_are_frozen():
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(AttributeError):
        params.generate.n_samples = 3  # type: ignore[misc]


def test_from_dict_accepts_int_for_float():
    mp = from_dict(ModelParams, {"family": "token_lm", "tokens": {"scheme": "chord"},
                                 "train": {"lr": 1}}, "m")
    assert mp.train.lr == 1.0 and isinstance(mp.train.lr, float)


def test_cli_fails_fast_and_names_the_param(tmp_path):
    bad = _write(tmp_path, lambda d: d["sources"]["bach_chorales"].update(limt=3))
    out = tmp_path / "raw"
    proc = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "fetch", "bach_chorales", "--out", str(out),
         "--cache", str(tmp_path / "cache"), "--params", str(bad)],
        capture_output=True, text=True)
    assert proc.returncode == 2
    assert "sources.bach_chorales.limt: unknown key" in proc.stderr
    assert not out.exists()  # no work was done
