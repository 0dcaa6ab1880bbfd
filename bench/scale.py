"""The whole DAG at full scale: fetch + prepare + every model on real corpora, stage by stage.

    python bench/scale.py                          # all of MAESTRO v2, the LPD sample in
                                                   # ../shared, all of piano-midi.de; quick
    python bench/scale.py --limit 20               # the same mix, 20 pieces per source
    python bench/scale.py --profile full --models melody_rnn

It builds the official archives from the local copies (MAESTRO's `maestro-v2.0.0-midi.zip`,
LPD's `lpd_cleansed.tar.gz`; piano-midi.de is given as its published folder), makes a fresh
DVC project with this repository's dvc.yaml and params.yaml (sources replaced by the mix),
then runs each stage alone (`dvc repro --single-item`), upstream first, printing its wall
time and the peak resident memory of its process tree. The baseline, run first in the same
session, is the chorale demo's fetch + prepare (`make run`'s corpus), so the prepare ratio
says what the real mix costs against the demo on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

from cadenza.dvc_cli import dvc_argv, dvc_env, run_dvc_shown
from cadenza.testing.checkout import DATASETS, ROOT
from pipeline.stages import stage_order


def build_archives(out: Path, maestro: Path, lpd: Path) -> tuple[Path, Path]:
    """The two archives as their publishers ship them (one top folder each)."""
    out.mkdir(parents=True, exist_ok=True)
    zip_base = out / maestro.name
    shutil.make_archive(str(zip_base), "zip", maestro.parent, maestro.name)
    zip_path = out / f"{maestro.name}-midi.zip"
    Path(f"{zip_base}.zip").rename(zip_path)
    tar_path = out / "lpd_cleansed.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        tf.add(lpd / "lpd_cleansed", arcname="lpd_cleansed")
    return zip_path, tar_path


def make_project(dest: Path, sources: dict, profile: str, models: list[str]) -> Path:
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sources"] = sources
    params["profile"] = profile
    if models:
        params["models"] = {m: params["models"][m] for m in models}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["init", "--no-scm", "-q"], ["config", "core.analytics", "false"]):
        run_dvc_shown(dest, *cmd)
    return dest


def run_measured(cmd: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the process and all its children); output to `log`."""
    start = time.perf_counter()
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=dvc_env(), stdout=fh, stderr=subprocess.STDOUT)
        peak = _watch_peak(proc)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return seconds, peak


def _watch_peak(proc: subprocess.Popen) -> float:
    """Sample the tree's summed RSS every 0.2 s until the process ends; return the peak."""
    peak = [0.0]

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree if p.is_running())
            except psutil.Error:
                rss = 0
            peak[0] = max(peak[0], rss / 2**20)
            time.sleep(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    proc.wait()
    watcher.join()
    return peak[0]


def run_dag(
    project: Path, label: str, targets: list[str] | None = None
) -> list[tuple[str, float, float]]:
    """Each stage of the DAG (or of `targets` and their upstream) alone, upstream first."""
    rows = []
    log = project / "scale.log"
    with contextlib.chdir(project):  # stage names relative to the project, as DVC prints them
        stages = stage_order(".", targets or [])
    for stage in stages:
        seconds, peak = run_measured(dvc_argv("repro", "--single-item", stage.name), project, log)
        rows.append((stage.name, seconds, peak))
        print(f"  {label:9s} {stage.name:28s} {seconds:8.1f} s {peak:8.0f} MB", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maestro", type=Path, default=DATASETS / "maestro-v2.0.0")
    ap.add_argument("--lpd", type=Path, default=DATASETS / "lpd_cleansed_sample")
    ap.add_argument("--piano-midi-de", type=Path, default=DATASETS / "piano-midi.de")
    ap.add_argument("--limit", type=int, default=0, help="pieces per source (0 = all)")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--models", nargs="*", default=[], help="default: every model")
    ap.add_argument("--workdir", type=Path, default=None, help="kept when given")
    args = ap.parse_args()
    for folder in (args.maestro, args.lpd, args.piano_midi_de):
        if not folder.is_dir():
            raise SystemExit(f"{folder}: missing; see ../shared/datasets/README.md")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cadenza-scale-"))
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"work in {work}",
        flush=True,
    )

    print("baseline: the chorale demo's fetch + prepare", flush=True)
    demo = make_project(work / "demo", {"bach_chorales": {"workers": 2}}, args.profile, args.models)
    base = run_dag(demo, "baseline", ["prepare"])

    zip_path, tar_path = build_archives(work / "archives", args.maestro, args.lpd)
    limit = {"limit": args.limit} if args.limit else {}
    sources = {
        "maestro_v2": {"url": str(zip_path), **limit},
        "lpd_cleansed": {"url": str(tar_path), **limit},
        "piano_midi_de": {"url": str(args.piano_midi_de.resolve()), **limit},
    }
    print(f"the mix, profile {args.profile}", flush=True)
    start = time.perf_counter()
    rows = run_dag(make_project(work / "mix", sources, args.profile, args.models), "mix")
    total = time.perf_counter() - start

    print("\n| stage | wall s | peak RSS MB |\n|---|---:|---:|")
    for name, seconds, peak in rows:
        print(f"| {name} | {seconds:.1f} | {peak:.0f} |")
    prepare_mix = next(s for n, s, _ in rows if n == "prepare")
    prepare_demo = next(s for n, s, _ in base if n == "prepare")
    print(
        f"\nwhole DAG on the mix: {total:.0f} s ({total / 60:.1f} min), "
        f"{len(rows)} stages; peak {max(p for *_, p in rows):.0f} MB"
    )
    print(
        f"prepare: mix {prepare_mix:.1f} s vs the chorale demo {prepare_demo:.1f} s "
        f"(ratio {prepare_mix / prepare_demo:.2f})"
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
