"""docs/extending.md's recipes, walked: a new corpus, a new model family and a new metric.

The code is the doc's: every block that follows a `<!-- walked: NAME -->` marker is read from
the page and registered as the edit it describes would register it (a function appended to a
module runs in that module's namespace, an entry goes into the registry dict, a new file
becomes its module), so the page and this test cannot drift apart. Then the recipe runs for
real: fetch and prepare on an archive of real MIDI files, training, generation and evaluation
of the new family, and the new metric through evaluate, compare and the report's table.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import sys
import textwrap
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import symusic
import yaml
from typer.testing import CliRunner

from cadenza.cli import app
from cadenza.compare.rows import compare_table
from cadenza.config import EvaluateParams, GenerateParams, PrepareParams, SourceParams, load_params
from cadenza.evaluate import evaluate_model, evaluate_reference
from cadenza.generate import generate
from cadenza.io import read_json
from cadenza.metrics import registry
from cadenza.metrics.registry import METRICS, MUSIC, RHYTHM_TABLE, Metric, names
from cadenza.models import SPECS, specs
from cadenza.prepare.shards import read_pieces
from cadenza.prepare.stage import prepare
from cadenza.report.tables import metric_groups, metrics_table
from cadenza.sources import layouts
from cadenza.sources import registry as sources_registry
from cadenza.sources.fetch import fetch_source
from cadenza.sources.folders import MIDI_SUFFIXES
from cadenza.sources.layouts import LAYOUTS
from cadenza.sources.registry import SOURCES
from cadenza.testing.checkout import ROOT
from cadenza.testing.corpora import chorale_like, write_corpus, write_score
from cadenza.train import train
from tests import test_config as config_tests

DOC = ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"<!-- walked: (?P<name>[\w-]+) -->\n```\w+\n(?P<code>.*?)\n```", re.S)
WALKED = {
    "corpus-layout",
    "corpus-layout-entry",
    "corpus-source",
    "corpus-params",
    "family-net",
    "family-spec",
    "family-module",
    "family-params",
    "metric-function",
    "metric-entry",
    "metric-test",
}


def blocks() -> dict[str, str]:
    """The doc's walked code blocks by marker name, dedented (entries are shown indented as
    they sit in their list)."""
    return {m["name"]: textwrap.dedent(m["code"]) for m in BLOCK.finditer(DOC.read_text())}


def entries(code: str, namespace: dict[str, Any]) -> list[Any]:
    """The list items of a block shown as lines of a list (`Source(...),`)."""
    return eval(f"[\n{code}\n]", namespace)


def module(name: str, code: str) -> types.ModuleType:
    """A new file of the recipe, as the module it would be."""
    new = types.ModuleType(name)
    exec(compile(code, f"<docs/extending.md: {name}>", "exec"), new.__dict__)
    return new


def shipped_params(**sections: Any) -> dict:
    """The repository's params.yaml with some top-level sections replaced."""
    return {**yaml.safe_load((ROOT / "params.yaml").read_text()), **sections}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy corpus of 30 chorale-like pieces, prepared."""
    root = tmp_path_factory.mktemp("corpus")
    out = root / "prepared"
    prepare(write_corpus(root), ["toy"], out, PrepareParams(valid_fraction=0.2, test_fraction=0.2))
    return out


def test_every_block_of_the_page_is_walked():
    assert set(blocks()) == WALKED


# --------------------------------------------------------------------------- a new corpus

ARCHIVE_MIDI = ["bach/a.mid", "bach/b.MID", "folk/c.midi", "folk/deep/d.mid", "e.mid"]


def write_midi_zip(path: Path) -> Path:
    """A corpus as publishers ship one: a top folder of nested real MIDI files, and a text
    file that is not music."""
    rng = np.random.default_rng(7)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for rel in ARCHIVE_MIDI:
            midi = write_score(path.parent / "scratch.mid", chorale_like(rng), key_sig=(0, 0))
            zf.write(midi, f"my_corpus/{rel}")
        zf.writestr("my_corpus/README.txt", "not music")
    (path.parent / "scratch.mid").unlink()
    return path


@pytest.fixture
def corpus_recipe(monkeypatch: pytest.MonkeyPatch) -> str:
    """Steps 1 and 2: the layout added to layouts.py and registered, and the source entry."""
    code = blocks()
    namespace = dict(vars(layouts), MIDI_SUFFIXES=MIDI_SUFFIXES)  # the import step 1 adds
    exec(code["corpus-layout"], namespace)
    for name, layout in eval(f"{{{code['corpus-layout-entry']}}}", namespace).items():
        monkeypatch.setitem(LAYOUTS, name, layout)
    (source,) = entries(code["corpus-source"], vars(sources_registry))
    monkeypatch.setitem(SOURCES, source.name, source)
    return str(source.name)


def test_corpus_recipe_fetches_and_prepares_an_archive_of_midi(
    corpus_recipe, tmp_path, monkeypatch
):
    """Steps 3 and 4 in a temporary project: the params block, `cadenza check`, then the
    fetch and prepare stages' commands as dvc.yaml writes them."""
    project = tmp_path / "project"
    archive = write_midi_zip(project / "downloads" / "my_corpus.zip")
    sources = yaml.safe_load(blocks()["corpus-params"])["sources"]
    # prepare's per-file work in this process: the shards are the same whichever runner
    params = shipped_params(sources=sources, runner={"kind": "serial"})
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    commands = [
        "cadenza check",
        stages["fetch"]["do"]["cmd"].replace("${key}", corpus_recipe),
        stages["prepare"]["cmd"],
    ]
    monkeypatch.chdir(project)
    for command in commands:
        program, *args = shlex.split(command)
        assert program == "cadenza"
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, f"{command}:\n{result.output}\n{result.exception!r}"

    raw = project / "data" / "raw" / corpus_recipe
    manifest = pd.read_csv(raw / "manifest.csv", dtype=str, keep_default_na=False)
    expected = [f"my_corpus/{Path(rel).with_suffix('')}" for rel in sorted(ARCHIVE_MIDI)]
    assert sorted(manifest.piece_id) == expected
    assert set(manifest.status) == {"ok"} and set(manifest.format) == {"midi"}
    (download,) = read_json(raw / "downloads.json")
    assert download["size"] == archive.stat().st_size
    pieces = read_pieces(project / "data" / "prepared")
    assert sorted(pieces.piece_id) == [f"{corpus_recipe}/{p}" for p in expected]
    assert set(pieces.split) <= {"train", "valid", "test"}
    assert (project / "data" / "prepared" / "rejects.parquet").exists()


def test_corpus_recipe_extracts_only_the_first_pieces_under_a_limit(corpus_recipe, tmp_path):
    archive = write_midi_zip(tmp_path / "my_corpus.zip")
    out = tmp_path / "raw"
    fetch_source(corpus_recipe, out, tmp_path / "cache", SourceParams(url=str(archive), limit=2))
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert list(manifest.piece_id) == ["my_corpus/bach/a", "my_corpus/bach/b"]
    files = out / "files"
    extracted = sorted(str(p.relative_to(files)) for p in files.rglob("*") if p.is_file())
    assert extracted == ["my_corpus/bach/a.mid", "my_corpus/bach/b.MID"]


# --------------------------------------------------------------------------- a new model family


def test_family_recipe_validates_trains_generates_and_evaluates(prepared, tmp_path, monkeypatch):
    code = blocks()
    namespace = dict(vars(specs))
    exec(code["family-net"], namespace)  # step 1: appended to specs.py
    monkeypatch.setattr(specs, "BigramNet", namespace["BigramNet"], raising=False)
    (spec,) = entries(code["family-spec"], namespace)  # step 2: the SPECS line
    monkeypatch.setitem(SPECS, spec.name, spec)
    family = module(spec.module, code["family-module"])  # step 3: the new file
    monkeypatch.setitem(sys.modules, spec.module, family)
    config_tests.test_each_family_module_keeps_the_contract_its_spec_declares(spec.name)

    models = yaml.safe_load(code["family-params"])["models"]  # step 4, checked by load_params
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(shipped_params(models=models)))
    (name,) = models
    mp = load_params(tmp_path / "params.yaml").model(name)
    assert isinstance(mp.net, namespace["BigramNet"])
    # one short epoch of the shared trainer
    mp = dataclasses.replace(
        mp, train=dataclasses.replace(mp.train, epochs=1, batch_size=4, max_batches=3)
    )
    ckpt, log = tmp_path / "ckpt.pt", tmp_path / "log.csv"
    train(name, mp, prepared, ckpt, log, seed=0)
    history = pd.read_csv(log)
    assert len(history) == 1 and history.train_loss.map(math.isfinite).all()

    out = tmp_path / "generated"
    table = generate(ckpt, prepared, out, GenerateParams(n_samples=2, length=48), seed=0)
    assert len(table) == 2
    for file in table.file:
        symusic.Score(str(out / file))  # a valid MIDI file
    metrics = evaluate_model(ckpt, prepared, out, tmp_path / "m.json", EvaluateParams(), 0)
    assert math.isfinite(metrics["nll"]) and 0 <= metrics["accuracy"] <= 1
    assert set(MUSIC) <= set(metrics)


# --------------------------------------------------------------------------- a new metric


@pytest.fixture
def metric_recipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Metric]:
    """Steps 1 and 2: the new metrics module and its registry entry, registered as the entry
    in `_ENTRIES` is at import: into METRICS, and into MUSIC, derived from it by `names` (one
    list that evaluate, compare and report share, so it is updated in place and restored)."""
    code = blocks()
    density = module("cadenza.metrics.density", code["metric-function"])
    (metric,) = entries(code["metric-entry"], dict(vars(registry), density=density))
    monkeypatch.setitem(METRICS, metric.name, metric)
    shipped = list(MUSIC)
    MUSIC[:] = names("music")
    try:
        test = {"np": np, "density": density}
        exec(code["metric-test"], test)  # step 3: the recipe's own test
        test[next(k for k in test if k.startswith("test_"))]()
        yield metric
    finally:
        MUSIC[:] = shipped


def test_metric_recipe_reaches_evaluate_compare_and_the_report(metric_recipe, prepared, tmp_path):
    name = metric_recipe.name
    assert name in MUSIC and metric_recipe.table == RHYTHM_TABLE
    metrics_dir = tmp_path / "metrics"
    evaluate_reference(prepared, metrics_dir / "reference.json", EvaluateParams(), seed=0)
    reference = read_json(metrics_dir / "reference.json")
    test_value = reference["test"][name]
    assert math.isfinite(test_value) and test_value > 0
    assert all(name in reference[row] for row in registry.REFERENCE_ROWS)

    # a model moving from 1 note per beat off the test data to 0.5 off: better
    diff = {
        "reports/metrics/reference.json": {f"test.{name}": {"old": test_value, "new": test_value}},
        "reports/metrics/model.json": {name: {"old": test_value + 1, "new": test_value + 0.5}},
    }
    table = compare_table(diff).set_index("file")
    row = table.loc["reports/metrics/model.json"]
    assert (row.metric, row.better, row.verdict) == (name, "closer to test", "better")

    report = metrics_table(metrics_dir)
    assert report.loc["reference:test", name] == pytest.approx(test_value)
    assert name in dict(metric_groups())[RHYTHM_TABLE]
