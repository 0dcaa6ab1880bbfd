"""What a report was made from: the git commit, the corpora (description, license,
citation, files, as prepare recorded them in `_meta.json`), the pieces per source and split,
what prepare rejected or filtered out, the prepare params and the training profile's caps."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pandas as pd

from cadenza.config import Params
from cadenza.io import read_json
from cadenza.prepare.shards import SPLITS, read_pieces
from cadenza.report.document import Section

CODE_PATHS = ("src", "pipeline", "dvc.yaml", "params.yaml")


def git_commit(folder: Path) -> str:
    """`git rev-parse --short HEAD`, plus "-dirty" when the project's code or config under
    `folder` differs from it (`src/`, `pipeline/`, `dvc.yaml`, `params.yaml`; not the
    outputs this very `dvc repro` rewrites); "unknown" outside git or without git. Never
    raises: a report must not fail over its own label."""

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(
                ["git", "-C", str(folder), *args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "--short", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    if status is None or status.returncode != 0:
        return f"{head.stdout.strip()} (work tree state unknown)"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def read_meta(prepared: Path) -> dict:
    """`_meta.json` of the prepared data; {} where there is none (an older or absent run)."""
    path = prepared / "_meta.json"
    return read_json(path) if path.exists() else {}


def provenance_sections(prepared: Path | None, params: Params | None, commit: str) -> list[Section]:
    """What the report was made from: the commit, the corpora, the piece counts and the
    settings that shaped the data and the training."""
    meta = read_meta(prepared) if prepared is not None else {}
    items = [f"Commit: `{commit}`", training_line(params)]
    if meta.get("encoder"):
        items.append("Prepare params: " + _pairs(meta["encoder"]))
    if meta.get("libraries"):
        items.append("Libraries: " + _pairs(meta["libraries"]))
    if prepared is None or not meta:
        text = (
            "No prepared data was given (`--prepared`), so the corpora and piece counts "
            "are unknown."
            if prepared is None
            else f"No `{prepared}/_meta.json`: the corpora and piece counts are unknown."
        )
        return [Section("What this report was made from", text, items=items)]
    sections = [
        Section("What this report was made from", items=items),
        Section("Corpora", items=corpus_lines(meta), level=3),
    ]
    counts = piece_counts(prepared, meta)
    sections.append(Section("Pieces per source and split", counts_text(meta), counts, level=3))
    return sections


def training_line(params: Params | None) -> str:
    """The profile and every cap it sets (all of them: a capped run's figures, e.g. an NLL
    over part of the test split, are not a full run's)."""
    if params is None:
        return "Training profile: unknown (no params file)."
    caps = dataclasses.asdict(params.profiles[params.profile])
    return f"Training profile `{params.profile}`: {_pairs(caps)} (0 = no cap), for every model."


def corpus_lines(meta: dict) -> list[str]:
    """One line per corpus: description (it names the version), license, citation, files.
    Falls back to the bare names where prepare recorded no registry entries."""
    corpora = meta.get("corpora") or {}
    names = list(meta.get("sources") or corpora)
    names += [n for n in corpora if n not in names]
    return [corpus_line(name, corpora.get(name)) for name in names]


def corpus_line(name: str, entry: dict | None) -> str:
    if not entry:
        return (
            f"{name} (its registry entry was not recorded in `_meta.json`; re-run "
            "prepare to get its version, license and citation here)"
        )
    files = ", ".join(_file_label(f) for f in entry.get("files") or []) or "none listed"
    return (
        f"{entry.get('name', name)}: {entry.get('description', '?')}. "
        f"License: {entry.get('license', '?')}. Cite: {entry.get('citation', '?')}. "
        f"Files: {files}."
    )


def _file_label(f: dict) -> str:
    sha = f.get("sha256") or ""
    where = f" from {f['url']}" if f.get("url") else ""
    return f"{f.get('name', '?')}{where}" + (f" (sha256 {sha[:12]}…)" if sha else "")


def piece_counts(prepared: Path, meta: dict) -> pd.DataFrame | None:
    """Pieces kept per source and split, and files rejected or filtered out per source
    (`rejects.parquet`: stage "filter" = filtered out, any other stage = rejected)."""
    if not (prepared / "pieces.parquet").exists():
        return None
    pieces = read_pieces(prepared)
    kept = pieces.groupby(["source", "split"]).size().unstack("split", fill_value=0)
    kept = kept.reindex(columns=list(SPLITS), fill_value=0)
    kept["total"] = kept.sum(axis=1)
    rejects_path = prepared / "rejects.parquet"
    rejects = (
        pd.read_parquet(rejects_path)
        if rejects_path.exists()
        else pd.DataFrame(columns=["source", "stage"])
    )
    kept = kept.reindex(kept.index.union(pd.Index(rejects.source.unique())), fill_value=0)
    filtered = rejects.stage == "filter"
    kept["rejected"] = rejects[~filtered].groupby("source").size()
    kept["filtered_out"] = rejects[filtered].groupby("source").size()
    order = [s for s in meta.get("sources") or [] if s in kept.index]
    kept = kept.reindex([*order, *(s for s in kept.index if s not in order)])
    kept = kept.fillna(0).astype(int)
    kept.loc["all sources"] = kept.sum()
    return kept.rename_axis("source")


def counts_text(meta: dict) -> str:
    """`_meta.json` "counts": the totals prepare logged, notes included."""
    counts = meta.get("counts") or {}
    splits = [
        f"{s} {counts[s]['pieces']} pieces / {counts[s]['notes']} notes"
        for s in SPLITS
        if isinstance(counts.get(s), dict)
    ]
    if not splits:
        return ""
    return (
        f"Prepare kept {'; '.join(splits)}; it rejected {counts.get('rejected', 0)} "
        f"file(s) (unreadable or too short) and filtered out "
        f"{counts.get('filtered_out', 0)} (e.g. no piano track)."
    )


def _pairs(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
