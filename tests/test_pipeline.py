"""The real thing, small: `dvc repro` and the Prefect flow in a temporary copy of the project.

These run real DVC, real Prefect (ephemeral server), real music21 conversion and real
training, on 16 chorales and one short epoch of five models of params.yaml, one of each kind
(`DEMO`; every model runs on the real corpora in tests/test_real_corpora.py).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cadenza.testing.checkout import ROOT, SHARED

pytestmark = pytest.mark.slow
MODELS = yaml.safe_load((ROOT / "params.yaml").read_text())["models"]
# the chorale run checks the DAG's mechanics (reports, audio, plots, embeddings, caching,
# remotes, param changes) on one model of each kind; every model of params.yaml runs end to end
# on slices of the real corpora in tests/test_real_corpora.py
DEMO = {
    name: MODELS[name]
    for name in ("chord_lstm", "pitch_next_lstm", "roll_lstm", "note_gan", "unigram")
}

TINY = {
    "sources": {"bach_chorales": {"limit": 16, "workers": 2}},
    "prepare": {"valid_fraction": 0.2, "test_fraction": 0.25},
    "profile": {"max_epochs": 1, "max_batches": 2},
    "generate": {"n_samples": 2, "length": 32, "prompt_len": 8},
}


def _env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    env["PREFECT_HOME"] = str(project / ".state" / "prefect")
    return env


def make_project(dest: Path, models: list[str] | None = None) -> Path:
    """A copy of this project's DAG, code paths and params, shrunk by the TINY overrides
    (and to `models`, when given)."""
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (dest / "reports").mkdir()
    shutil.copy(ROOT / "reports" / "listening.json", dest / "reports")  # a dep of `report`
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sources"] = TINY["sources"]
    params["prepare"].update(TINY["prepare"])
    params["profiles"]["quick"] = TINY["profile"]
    params["generate"].update(TINY["generate"])
    if models:
        params["models"] = {name: params["models"][name] for name in models}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "init", "--no-scm", "-q"], dest)
    run(["dvc", "config", "core.analytics", "false"], dest)
    return dest


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    exe = [sys.executable, "-m", "dvc", *cmd[1:]] if cmd[0] == "dvc" else cmd
    proc = subprocess.run(exe, cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("e2e") / "project", models=list(DEMO))
    run(["dvc", "repro"], project)
    return project


def test_repro_produces_reports_with_finite_metrics(reproduced):
    report = (reproduced / "reports" / "report.md").read_text()
    board = report.split("## Leaderboard", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip() for line in board.splitlines() if line.startswith("|")}
    assert set(DEMO) <= rows  # every model is a row of the leaderboard
    for row in ("reference:train", "reference:test", "reference:test_shuffled_bars"):
        assert f"| {row} " in report
    for model, entry in DEMO.items():
        metrics = json.loads((reproduced / "reports" / "metrics" / f"{model}.json").read_text())
        if "tokens" in entry:
            assert math.isfinite(metrics["nll"]) and math.isfinite(metrics["accuracy"]), model
        if entry["family"] == "roll_lstm":
            assert math.isfinite(metrics["frame_nll"]), model
        samples = sorted((reproduced / "data" / "generated" / model).glob("*.mid"))
        assert len(samples) == 2, model
    for model in ("chord_lstm", "pitch_next_lstm"):
        metrics = json.loads((reproduced / "reports" / "metrics" / f"{model}.json").read_text())
        for key in ("used_pitch_classes", "tonal_distance", "polyphony", "pitch_entropy"):
            assert math.isfinite(metrics[key]), (model, key)
        assert 0 <= metrics["yang_lerch"]["mean"]["oa"] <= 1
        for sample in (reproduced / "data" / "generated" / model).glob("*.mid"):
            assert (reproduced / "reports" / "plots" / f"{model}_{sample.stem}.png").exists()
    for png in ("loss.png", "metrics.png"):
        assert (reproduced / "reports" / "plots" / png).stat().st_size > 1000
    reference = json.loads((reproduced / "reports" / "metrics" / "reference.json").read_text())
    assert reference["test"]["n_pieces"] >= 1 and 2 <= reference["test"]["polyphony"] <= 4
    assert reference["train"]["n_pieces"] > reference["test"]["n_pieces"]


def test_html_report_references_only_local_files(reproduced):
    page = reproduced / "reports" / "index.html"
    text = page.read_text()
    assert "Closeness to real music" in text and "<table" in text
    targets = re.findall(r'(?:src|href)="([^"]+)"', text)
    assert targets, "no images or links"
    for target in targets:
        assert "://" not in target and not target.startswith("//"), target
        assert (page.parent / target).exists(), target


def test_repro_renders_audio_and_embedding_maps(reproduced):
    """Audio of every sample and real excerpt (FluidSynth, which CI installs), or one line
    saying why not; a t-SNE map per model with a per-symbol embedding."""
    from cadenza.audio import find_synth
    from cadenza.config import ListenParams
    from cadenza.listening import REAL

    report = (reproduced / "reports" / "report.md").read_text()
    audio = reproduced / "data" / "audio"
    synth = find_synth(ListenParams())
    for name in [*DEMO, REAL]:
        status = json.loads((audio / name / "render.json").read_text())
        if isinstance(synth, str):
            assert status["unavailable"] and not status["clips"], name
            continue
        midi = reproduced / "data" / ("excerpts" if name == REAL else f"generated/{name}")
        assert len(status["clips"]) == len(list(midi.glob("*.mid"))) >= 1, name
        for clip in status["clips"]:
            assert (audio / name / clip).stat().st_size > 1000
            assert f"(../data/audio/{name}/{clip})" in report
    assert sum(line.startswith("No audio:") for line in report.splitlines()) == (
        1 if isinstance(synth, str) else 0
    )
    maps = json.loads((reproduced / "reports" / "embeddings" / "maps.json").read_text())
    for model, entry in DEMO.items():
        if entry["family"] in ("token_lm", "transformer", "roll_lstm"):
            assert maps[model] == f"{model}.png"
            assert f"(embeddings/{model}.png)" in report
        else:
            assert maps[model].startswith("no map"), model
    assert "## Listening test" in report and "64 listeners per group" in report


def test_dvc_plots_render_offline(reproduced):
    proc = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "plots", "--out", "dvc_plots"],
        cwd=reproduced,
        env=_env(reproduced),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (reproduced / "dvc_plots" / "index.html").read_text()
    assert "window.vegaEmbed" in page and "Loss curves" in page
    assert "cdn.jsdelivr" not in page and "<script src=" not in page


def test_second_repro_runs_nothing(reproduced):
    proc = run(["dvc", "repro"], reproduced)
    assert "Running stage" not in proc.stdout
    assert "up to date" in proc.stdout


def test_dvc_remote_moves_data_and_models_to_another_machine(reproduced, tmp_path):
    """push to a local-directory remote; a fresh checkout elsewhere pulls the same bytes."""
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "--local", "-d", "shared", str(remote)], reproduced)
    try:
        run(["dvc", "push"], reproduced)
    finally:  # the fixture is shared: leave it as it was
        run(["dvc", "remote", "remove", "--local", "shared"], reproduced)
    other = tmp_path / "other-machine"  # what a git clone holds: code, lock, small reports
    other.mkdir()
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore"):
        shutil.copy(reproduced / name, other / name)
    for name in ("src", "reports"):  # reports/ holds the `cache: false` outs, kept in git
        shutil.copytree(reproduced / name, other / name)
    shutil.copytree(
        reproduced / ".dvc",
        other / ".dvc",
        ignore=shutil.ignore_patterns("cache", "tmp", "config.local"),
    )
    run(["dvc", "remote", "add", "--local", "-d", "shared", str(remote)], other)
    run(["dvc", "pull"], other)
    for out in ("data/prepared/_meta.json", "data/models/chord_lstm/ckpt.pt"):
        assert (other / out).read_bytes() == (reproduced / out).read_bytes()
    assert "up to date" in run(["dvc", "status"], other).stdout


def test_param_change_reruns_only_downstream_and_compare_shows_it(reproduced):
    shown = run(["dvc", "metrics", "show", "--json"], reproduced).stdout
    assert "chord_lstm" in shown and "reference" in shown
    # make the project a git repo, so that `cadenza compare HEAD` has a commit to read
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1"],
    ):
        run(cmd, reproduced)
    run(["dvc", "config", "core.no_scm", "false"], reproduced)
    # one model's learning rate: its own stages and the shared ones after them rerun, and no
    # other model's (each train@ stage reads only its own `models.<key>` section)
    params = yaml.safe_load((reproduced / "params.yaml").read_text())
    params["models"]["chord_lstm"]["train"]["lr"] /= 2
    (reproduced / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro"], reproduced)
    ran = {line.split("'")[1] for line in proc.stdout.splitlines() if "Running stage" in line}
    # `render` reruns only if the new weights drew different samples (DVC compares bytes)
    own = {f"{stage}@chord_lstm" for stage in ("train", "generate", "evaluate")}
    assert ran - {"render"} == own | {"embeddings", "report"}, ran
    out = run([sys.executable, "-m", "cadenza.cli", "compare", "HEAD"], reproduced).stdout
    assert out.startswith("compare HEAD -> workspace") and "WARNING" not in out
    shown = out.split("chord_lstm (reports/metrics/chord_lstm.json)", 1)[1]
    assert re.search(r" [\d.]+ -> [\d.]+ +\([+-][\d.]+, lower, (better|worse)\)", shown)
    assert "unchanged hidden (--all)" in out


def test_bad_param_stops_repro_before_any_work(tmp_path):
    project = make_project(tmp_path / "bad")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["sources"]["bach_chorales"]["limits"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run(["dvc", "repro"], project, check=False)
    assert proc.returncode != 0
    assert "sources.bach_chorales.limits: unknown key" in proc.stdout + proc.stderr
    assert not (project / "data").exists()


def test_prefect_flow_reproduces_the_dag(tmp_path):
    project = make_project(tmp_path / "flow")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cadenza.cli",
            "flow",
            "run",
            "--project",
            str(project),
            "--target",
            "prepare",
        ],
        cwd=project,
        env=_env(project),
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "stages reproduced or up to date: fetch@bach_chorales, prepare" in out
    assert "Finished in state Completed()" in out
    assert (project / "data" / "prepared" / "_meta.json").exists()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert {"fetch@bach_chorales", "prepare"} <= set(lock["stages"])
    assert "train@chord_lstm" not in lock["stages"]  # only the targets and their upstream


@pytest.mark.skipif(
    not (SHARED / "datasets" / "boulanger2012").exists(),
    reason="../shared/datasets/boulanger2012 is absent",
)
def test_benchmark_pipeline_runs_through_dvc(tmp_path):
    """bench/bl/dvc.yaml, shrunk to one epoch of roll_lstm on JSB, fetched from a
    mirror given in the environment."""
    project = tmp_path / "bench"
    project.mkdir()
    shutil.copytree(ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "bench" / "bl", project / "bench" / "bl")
    params_path = project / "bench" / "bl" / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["models"]["roll_lstm"]["train"].update(epochs=1)
    params["run"] = {"jsb-roll_lstm-0": {"dataset": "jsb", "model": "roll_lstm", "seed": 0}}
    params_path.write_text(yaml.safe_dump(params))
    run(["dvc", "init", "--no-scm", "-q"], project)
    env = _env(project)
    env["CADENZA_MIRROR_BL_JSB"] = str(
        SHARED / "datasets" / "boulanger2012" / "JSB Chorales.pickle"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "bench/bl/dvc.yaml"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((project / "bench/bl/results/jsb-roll_lstm-0.json").read_text())
    assert result["test_frames"] == 4725 and math.isfinite(result["test_nll"])
    table = (project / "bench" / "bl" / "results.md").read_text()
    assert "| Cadenza `roll_lstm` |" in table and "| RNN-NADE (B-L 2012) |" in table
