"""DVC's plot pages render offline: `dvc plots show`, `dvc plots diff` and `cadenza plots --rev`.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so with no network it is
blank. `.dvc/config` points `plots.html_template` at a template with the three libraries
inlined (built from the pinned vl-convert-python). Each page is opened from disk in headless
Chromium with networking off and must hold drawn SVG line marks, one line per revision.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import configobj
import pytest
import vl_convert
from dvc.repo import Repo

from cadenza.dvc_plots import TEMPLATE, offline_template_html
from cadenza.testing.browser import CHROMIUM, headless_dom
from cadenza.testing.checkout import ROOT

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt install chromium; CI installs it)"
)
# a loss curve at two commits: 3 points, then 4 (the second run trained longer)
LOSS_V1 = "step,loss\n0,3.0\n1,2.5\n2,2.1\n"
LOSS_V2 = "step,loss\n0,3.0\n1,2.2\n2,1.7\n3,1.5\n"
LINE_MARK = re.compile(
    r'<path aria-label="([^"]*)" role="graphics-symbol" '
    r'aria-roledescription="line mark" d="([^"]*)"'
)


def _env() -> dict[str, str]:
    """The venv's bin first, analytics off: as `make` and the `cadenza` CLI run DVC."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def _run(cmd: list[str], cwd: Path) -> str:
    """Run a command in `cwd`; its stdout, or a failure that shows what it printed."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def _dvc(project: Path, *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], project)


def _git(project: Path, *args: str) -> str:
    return _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], project)


def repo_template_setting() -> str:
    """`plots.html_template` as this repository's `.dvc/config` sets it (read without running
    DVC in the checkout); DVC resolves a relative value against `.dvc/`."""
    return configobj.ConfigObj(str(ROOT / ".dvc" / "config"))["plots"]["html_template"]


def two_commit_project(dest: Path, repo_config: bool) -> Path:
    """A git + DVC project whose `dvc.yaml` plots loss.csv, committed twice. With
    `repo_config`, it has this repository's `.dvc/config` and the template at the same
    relative path, as a clone would."""
    dest.mkdir(parents=True)
    _git(dest, "init", "-q")
    Repo.init(str(dest)).close()  # `dvc init`, without another interpreter start
    if repo_config:
        shutil.copy(ROOT / ".dvc" / "config", dest / ".dvc" / "config")
        copy = (dest / ".dvc" / repo_template_setting()).resolve()
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(TEMPLATE, copy)
    (dest / "dvc.yaml").write_text("plots:\n  - loss.csv:\n      x: step\n      y: loss\n")
    for loss, message in ((LOSS_V1, "v1"), (LOSS_V2, "v2")):
        (dest / "loss.csv").write_text(loss)
        _git(dest, "add", "-A")
        _git(dest, "commit", "-qm", message)
    return dest


def rendered_lines(page: Path, tmp: Path) -> dict[str, int]:
    """Open `page` from disk in headless Chromium with every network request refused; the
    line marks vega drew, as {aria label: number of points}."""
    assert "<script src=" not in page.read_text()
    dom = headless_dom(
        page,
        tmp / "profile",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        budget_ms=5000,
        timeout_s=60,
    )
    return {label: path.count("L") + 1 for label, path in LINE_MARK.findall(dom)}


def _revs(lines: dict[str, int]) -> dict[str, int]:
    """{revision: points}, from labels such as 'step: 0; loss: 3; rev: HEAD~1'."""
    return {label.rsplit("rev: ", 1)[-1]: points for label, points in lines.items()}


def test_template_is_the_pinned_vl_convert_bundle():
    """The committed template is exactly what the pinned vl-convert builds: regenerate it
    (`python -m cadenza.dvc_plots`) after changing the pin."""
    pin = re.search(r"^vl-convert-python==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert pin is not None and vl_convert.__version__ in pin.group(1)
    page = TEMPLATE.read_text()
    assert page == offline_template_html()
    assert "{plot_divs}" in page and "<script src=" not in page and "{scripts}" not in page
    assert (ROOT / ".dvc" / repo_template_setting()).resolve() == TEMPLATE.resolve()


@needs_chromium
def test_dvc_plots_show_and_diff_render_offline_with_the_repo_config(tmp_path):
    project = two_commit_project(tmp_path / "project", repo_config=True)
    _dvc(project, "plots", "show", "-o", "show")
    assert set(_revs(rendered_lines(project / "show" / "index.html", tmp_path)).values()) == {4}
    _dvc(project, "plots", "diff", "HEAD~1", "HEAD", "-o", "diff")
    drawn = _revs(rendered_lines(project / "diff" / "index.html", tmp_path))
    assert drawn == {"HEAD~1": 3, "HEAD": 4}


@needs_chromium
def test_cadenza_plots_compares_revisions_offline_without_the_config(tmp_path):
    project = two_commit_project(tmp_path / "project", repo_config=False)
    out = _run(
        [
            sys.executable,
            "-m",
            "cadenza.cli",
            "plots",
            "--rev",
            "HEAD~1",
            "--rev",
            "HEAD",
            "--out",
            "compare",
        ],
        project,
    )
    page = project / "compare" / "index.html"
    assert "plots: compare/index.html" in out
    assert _revs(rendered_lines(page, tmp_path)) == {"HEAD~1": 3, "HEAD": 4}


# --- training on another machine: the DVC half of docs/orchestration.md#training-on-a-gpu-machine

SPLIT_DAG = """stages:
  fetch:
    cmd: echo corpus > raw.txt
    outs: [raw.txt]
  prepare:
    cmd: cp raw.txt prepared.txt
    deps: [raw.txt]
    outs: [prepared.txt]
  train:
    foreach: [a, b]
    do:
      cmd: cat prepared.txt > model_${item}.txt && echo ${item} >> model_${item}.txt
      deps: [prepared.txt]
      outs:
        - model_${item}.txt
  evaluate:
    cmd: cat model_a.txt model_b.txt > scores.txt
    deps: [model_a.txt, model_b.txt]
    outs: [scores.txt]
"""


def _ran(
    checkout: Path,
    monkeypatch: pytest.MonkeyPatch,
    pull: list[str],
    with_deps: bool,
    target: str | None,
) -> list[str]:
    """In `checkout` (DVC resolves targets against the working directory): `dvc pull`
    the `pull` stages, `dvc repro` `target` (or all), `dvc push`; the stages that ran."""
    monkeypatch.chdir(checkout)
    with Repo(str(checkout)) as repo:
        if pull:
            repo.pull(targets=pull, with_deps=with_deps)
        ran = [stage.addressing for stage in repo.reproduce(*([target] if target else []))]
        repo.push()
    return ran


def test_training_runs_on_another_checkout_through_a_dvc_remote(tmp_path, monkeypatch):
    """CPU checkout: fetch + prepare, push. GPU checkout (a git clone): pull prepare with its
    deps, repro train: only the training stages run. Back on the CPU checkout: pull, repro:
    only evaluate runs, and everything is up to date."""
    cpu, gpu, remote = tmp_path / "cpu", tmp_path / "gpu", tmp_path / "remote"
    cpu.mkdir()
    _git(cpu, "init", "-q")
    with Repo.init(str(cpu)) as repo, repo.config.edit() as conf:  # dvc remote add -d
        conf["remote"]["storage"] = {"url": str(remote)}
        conf["core"]["remote"] = "storage"
    (cpu / "dvc.yaml").write_text(SPLIT_DAG)
    assert _ran(cpu, monkeypatch, [], False, "prepare") == ["fetch", "prepare"]
    _git(cpu, "add", "-A")
    _git(cpu, "commit", "-qm", "prepared")
    _git(tmp_path, "clone", "-q", str(cpu), str(gpu))
    assert _ran(gpu, monkeypatch, ["prepare"], True, "train") == ["train@a", "train@b"]
    _git(gpu, "add", "-A")
    _git(gpu, "commit", "-qm", "trained")
    _git(cpu, "pull", "-q", str(gpu), "HEAD")
    assert _ran(cpu, monkeypatch, ["train"], False, None) == ["evaluate"]
    assert (cpu / "model_b.txt").read_text() == (gpu / "model_b.txt").read_text() == "corpus\nb\n"
    with Repo(str(cpu)) as repo:
        assert repo.status() == {}
