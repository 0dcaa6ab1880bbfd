"""The `prepare` stage: every fetched source -> one prepared dataset under `data/prepared/`.

Per piece: parse (symusic), keep the source's tracks, estimate the key, transpose to C major /
A minor, assign the split by piece id, then encode notes and roll runs. Anything that goes
wrong with one file becomes a row in the rejects table; the stage goes on. The whole output
folder is built beside the target and swapped in at the end, so a kill leaves no half-written
shard, and a run that fails (no usable piece) leaves the previous output as it was: dvc.yaml
marks `data/prepared` `persist: true` so that DVC does not delete it before the run either.
Workers get absolute paths, so a Dask worker started in any folder of a shared filesystem
can open the files; reasons are written back with the corpus folder as the user named it.
Columns are gathered as numpy arrays and become Arrow tables once, at the end: at MAESTRO
scale (7 M notes) per-piece DataFrames would cost more time and memory than parsing.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from cadenza.config import PrepareParams, RunnerParams
from cadenza.io import atomic_dir, read_json, write_json, write_parquet
from cadenza.meter import format_meter
from cadenza.parallel import WorkerDied, map_ordered
from cadenza.prepare.key import estimate_key, shift_to_c
from cadenza.prepare.parse import NOTE_ARRAYS, ParsedPiece, RejectedPiece
from cadenza.prepare.readers import read_piece
from cadenza.prepare.shards import REJECT_COLUMNS, SCHEMA_VERSION, SPLITS, write_partitioned
from cadenza.prepare.split import split_of
from cadenza.representations.rolls import roll_runs

log = logging.getLogger(__name__)

NOTE_COLUMNS = [*NOTE_ARRAYS, "step_beats", "step_s"]
PIECE_COLUMNS_IN_NOTES = ["source", "composer", "title", "year"]
ROLL_COLUMNS = ["pitch", "start", "end"]
SERIAL = RunnerParams(kind="serial")


def prepare(
    raw_root: Path,
    sources: list[str],
    out: Path,
    params: PrepareParams,
    runner: RunnerParams = SERIAL,
) -> dict:
    """Prepare `sources` (folders under `raw_root`) into `out`; return the counts.

    The per-file work maps over `runner`; its results arrive in manifest order. When no piece
    is usable, every reject is logged, then a RuntimeError names the commonest reasons; `out`
    is left untouched.
    """
    pieces: list[dict] = []
    notes: list[dict[str, np.ndarray]] = []
    rolls: list[dict[str, np.ndarray]] = []
    rejects: list[tuple] = []
    first_copy: dict[str, str] = {}  # sha256 -> the piece id of its first file
    n_files = 0
    for name in sources:
        folder = raw_root / name
        source = read_json(folder / "source.json")
        manifest = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
        if {"path", "format", "split"} - set(manifest.columns):  # written before schema 1
            raise RuntimeError(f"{folder}/manifest.csv: outdated; re-run fetch@{name}")
        for row in manifest[manifest.status != "ok"].itertuples():
            rejects.append((name, row.piece_id, row.source_path, "fetch", row.reason))
        ok = manifest[manifest.status == "ok"]
        unique = []
        for row in ok.itertuples(index=False):
            copy_of = _seen_before(first_copy, f"{name}/{row.piece_id}", getattr(row, "sha256", ""))
            if copy_of:
                rejects.append((name, row.piece_id, row.source_path, "filter", copy_of))
            else:
                unique.append(row)
        # absolute: a Dask worker's working directory can be anywhere on the shared filesystem
        jobs = [
            FileJob(folder.absolute(), name, SimpleNamespace(**row._asdict()), source, params)
            for row in unique
        ]
        n_files += len(jobs)
        results = map_ordered(prepare_file, jobs, runner, must_see=[folder.absolute()])
        tally = SourceTally(name, len(jobs))
        bar = tqdm(
            zip(jobs, results, strict=True), total=len(jobs), desc=f"prepare {name}", unit="file"
        )
        for job, mapped in bar:
            result = file_outcome(mapped)
            tally.add(result)
            bar.set_postfix_str(tally.postfix(), refresh=False)
            if isinstance(result, Rejected):
                rejects.append(reject_row(name, job, named_as_given(result, job.folder, folder)))
                continue
            piece, piece_notes, piece_roll = result
            pieces.append(piece)
            notes.append(piece_notes)
            rolls.append(piece_roll)
        log.info("%s", tally.summary())
    rejects_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    for r in rejects_df.itertuples():  # first: a failure below is then the last line
        log.warning("rejected %s (%s): %s", r.piece_id, r.stage, r.reason)
    if not pieces:
        raise RuntimeError(no_usable_piece(sources, n_files, rejects_df))
    # group pieces by split, so that each split is one contiguous slice of the tables
    order = sorted(range(len(pieces)), key=lambda i: SPLITS.index(pieces[i]["split"]))
    pieces_df = pd.DataFrame([pieces[i] for i in order])
    notes, rolls = [notes[i] for i in order], [rolls[i] for i in order]
    notes_table, notes_rows = _columns_table(pieces_df, notes, NOTE_COLUMNS, with_metadata=True)
    rolls_table, rolls_rows = _columns_table(pieces_df, rolls, ROLL_COLUMNS)
    del notes, rolls  # the tables hold the same buffers
    counts: dict = {
        split: {"pieces": int((pieces_df.split == split).sum()), "notes": notes_rows.get(split, 0)}
        for split in SPLITS
    }
    for split in SPLITS:  # e.g. 5 pieces at test_fraction 0.1: say so before generate fails
        if not counts[split]["pieces"]:
            log.warning(
                "the %s split is empty (%d pieces in all): add pieces or change "
                "prepare.valid_fraction / test_fraction; the stages that read it will fail "
                "or score nothing",
                split,
                len(pieces_df),
            )
    counts["rejected"] = int((rejects_df.stage != "filter").sum())
    counts["filtered_out"] = int((rejects_df.stage == "filter").sum())  # e.g. LPD, no piano
    with atomic_dir(out) as tmp:
        write_partitioned(
            {"notes": (notes_table, notes_rows), "rolls": (rolls_table, rolls_rows)}, tmp
        )
        write_parquet(tmp / "pieces.parquet", pieces_df)
        write_parquet(tmp / "rejects.parquet", rejects_df)
        write_json(
            tmp / "_meta.json",
            {
                "schema_version": SCHEMA_VERSION,
                "sources": sources,
                # the registry entry of each source as fetched: what the report names and cites
                "corpora": {name: read_json(raw_root / name / "source.json") for name in sources},
                "encoder": asdict(params),
                "libraries": _library_versions(),
                "counts": counts,
            },
        )
    log.info(
        "prepared %d pieces (%d notes), rejected %d -> %s",
        len(pieces_df),
        len(notes_table),
        len(rejects_df),
        out,
    )
    return counts


def _seen_before(first_copy: dict[str, str], piece_id: str, sha256: str) -> str:
    """Why a file is left out as a copy of one met earlier (in any source), or "".

    Why: byte-identical files under two names (LPD files one MIDI matched to several tracks,
    a folder holding a piece twice) would each draw a split, and the same music would then be
    trained on and tested on."""
    if not sha256:  # the B-L pickles' pieces share one file and have none
        return ""
    if sha256 in first_copy:
        return f"duplicate of {first_copy[sha256]} (the same file, sha256 {sha256[:12]}...)"
    first_copy[sha256] = piece_id
    return ""


@dataclass(frozen=True)
class FileJob:
    """One manifest row to prepare: all a worker process needs, picklable."""

    folder: Path
    source_name: str
    row: SimpleNamespace
    source: dict
    params: PrepareParams


@dataclass(frozen=True)
class Rejected:
    """A file that `prepare_file` could not use: a rejects-table row to be."""

    stage: str
    reason: str


PreparedFile = tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]


def named_as_given(rejected: Rejected, absolute: Path, given: Path) -> Rejected:
    """`rejected` with the corpus folder written as the user gave it (`data/raw/x`).

    Why: workers get absolute paths, so an OSError's reason names the clone's location;
    written back as given, the rejects table (and so the stage's output hash in DVC) is the
    same wherever the clone lives and whichever runner read the files.
    """
    if str(absolute) == str(given):
        return rejected
    return Rejected(rejected.stage, rejected.reason.replace(str(absolute), str(given)))


TOP_REASONS = 3


def reason_kind(stage: str, reason: str) -> str:
    """A reject's reason with its numbers and quoted names blanked, so that rejects of one
    cause (every missing file, every bad header) count as one in a failure's summary."""
    return f"{stage}: " + re.sub(r"b?'[^']*'", "'...'", re.sub(r"\d+", "#", reason))


def no_usable_piece(sources: list[str], n_files: int, rejects: pd.DataFrame) -> str:
    """The failure message when every file was rejected or filtered out: counts and the
    commonest reasons, so a log cut to its last lines still says what went wrong."""
    kinds = Counter(reason_kind(r.stage, r.reason) for r in rejects.itertuples())
    top = "; ".join(f"{n} x {kind}" for kind, n in kinds.most_common(TOP_REASONS))
    read = rejects[~rejects.stage.isin(["fetch", "filter"])]
    return (
        f"prepare: no usable piece in {sources}: {len(read)} of {n_files} files rejected, "
        f"{int((rejects.stage == 'filter').sum())} filtered out; commonest reasons: "
        f"{top or 'none'}; each reject is logged above"
    )


def file_outcome(mapped: PreparedFile | Rejected | WorkerDied) -> PreparedFile | Rejected:
    """A map result as `prepare_file`'s own: a file whose worker process died (a parser's
    segfault, an OOM kill) is rejected like any other unusable file, so the stage goes on."""
    if isinstance(mapped, WorkerDied):
        return Rejected(
            "worker", f"the worker process died while preparing this file ({mapped.how})"
        )
    return mapped


def reject_row(source_name: str, job: FileJob, rejected: Rejected) -> tuple:
    """The rejects-table row (`REJECT_COLUMNS`) of one rejected file."""
    return (
        source_name,
        f"{source_name}/{job.row.piece_id}",
        job.row.path,
        rejected.stage,
        rejected.reason,
    )


class SourceTally:
    """Kept / rejected / filtered-out counts of one source as its files come back.

    Why: a corpus of 21k files takes minutes; the bar's postfix and a log line every
    `LOG_EVERY_S` seconds say how it is going (a flood of rejects shows early), and the
    closing line gives the source's totals and rate.
    """

    LOG_EVERY_S = 10.0

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total = name, total
        self.kept = self.rejected = 0
        self.filtered: Counter[str] = Counter()
        self.start = self.last_log = time.perf_counter()

    def add(self, result: object) -> None:
        if not isinstance(result, Rejected):
            self.kept += 1
        elif result.stage == "filter":
            self.filtered[result.reason] += 1
        else:
            self.rejected += 1
        now = time.perf_counter()
        if now - self.last_log >= self.LOG_EVERY_S:
            self.last_log = now
            log.info(
                "prepare %s: %d/%d files, %s", self.name, self.done, self.total, self.postfix()
            )

    @property
    def done(self) -> int:
        return self.kept + self.rejected + self.filtered.total()

    def postfix(self) -> str:
        return f"kept={self.kept} rejected={self.rejected} filtered={self.filtered.total()}"

    def summary(self) -> str:
        seconds = time.perf_counter() - self.start
        why = ", ".join(
            f"{n} {reason}" if len(self.filtered) > 1 else reason
            for reason, n in self.filtered.most_common()
        )
        filtered = f", {self.filtered.total()} filtered out ({why})" if self.filtered else ""
        return (
            f"prepare {self.name}: {self.kept} kept, {self.rejected} rejected{filtered}"
            f" in {seconds:.1f} s, {self.done / max(seconds, 1e-9):.0f} files/s"
        )


def prepare_file(
    job: FileJob,
) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]] | Rejected:
    """Read, key-normalise and encode one file; a bad file comes back as its rejection."""
    row, params = job.row, job.params
    piece_id = f"{job.source_name}/{row.piece_id}"
    try:
        parsed = read_piece(job.folder, row, job.source)
        split = row.split or split_of(piece_id, params.valid_fraction, params.test_fraction)
        piece, notes, roll = encode_piece(
            parsed, piece_id, split, params, params.transpose and job.source["transpose"]
        )
    except RejectedPiece as err:
        return Rejected(err.stage, str(err))
    piece.update(
        source=job.source_name,
        title=row.title,
        composer=row.composer,
        year=row.year,
        sha256=row.sha256,
    )
    return piece, notes, roll


def encode_piece(
    parsed: ParsedPiece, piece_id: str, split: str, params: PrepareParams, transpose: bool = True
) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Key-normalise one parsed piece; return its pieces row, note columns and roll runs."""
    notes = parsed.notes
    if len(notes["pitch"]) < params.min_notes:
        raise RejectedPiece(f"too few notes: {len(notes['pitch'])} < min_notes={params.min_notes}")
    key = estimate_key(notes["pitch"], notes["duration_beats"], parsed.key_signature)
    shift = shift_to_c(key) if transpose else 0
    pitch = notes["pitch"] + shift
    keep = (pitch >= 0) & (pitch <= 127)
    repairs = list(parsed.repairs)
    if not keep.all():  # a note the shift moves off the MIDI range goes, and says so
        dropped = int((~keep).sum())
        repairs.append(
            f"{dropped} notes moved out of MIDI range by the key shift {shift:+d}: dropped"
        )
        if keep.sum() < params.min_notes:
            raise RejectedPiece(
                f"too few notes: {int(keep.sum())} < min_notes={params.min_notes} after "
                f"dropping {dropped} the key shift {shift:+d} moved out of MIDI range"
            )
    order = np.lexsort((notes["track"][keep], pitch[keep], notes["onset_beats"][keep]))
    cols = {name: notes[name][keep][order] for name in NOTE_ARRAYS}
    cols["pitch"] = pitch[keep][order]
    cols["step_beats"] = np.diff(cols["onset_beats"], prepend=0.0)
    cols["step_s"] = np.diff(cols["onset_s"], prepend=0.0)
    run_pitch, run_start, run_end = roll_runs(
        cols["onset_beats"], cols["duration_beats"], cols["pitch"], params.steps_per_beat
    )
    roll: dict[str, np.ndarray] = {
        "pitch": run_pitch.astype(np.int16),
        "start": run_start.astype(np.int32),
        "end": run_end.astype(np.int32),
    }
    piece: dict[str, object] = {
        "piece_id": piece_id,
        "split": split,
        "n_notes": len(cols["pitch"]),
        "n_steps": int(run_end.max()),
        "n_tracks": len(np.unique(cols["track"])),
        "time_signatures": format_meter(parsed.time_signatures),
        "duration_beats": float((cols["onset_beats"] + cols["duration_beats"]).max()),
        "key_original": key.name,
        "key_method": key.method,
        "key_shift": shift,
        "repairs": "; ".join(repairs),
    }
    return piece, cols, roll


def _columns_table(
    pieces: pd.DataFrame,
    parts: list[dict[str, np.ndarray]],
    columns: list[str],
    with_metadata: bool = False,
) -> tuple[pa.Table, dict[str, int]]:
    """Per-piece arrays as one Arrow table, with dictionary-encoded piece ids.

    Returns the table and its row count per split (pieces arrive grouped by split).
    """
    lengths = np.array([len(p[columns[0]]) for p in parts])
    piece_index = np.repeat(np.arange(len(parts), dtype=np.int32), lengths)
    data = {
        "piece_id": pa.DictionaryArray.from_arrays(piece_index, pa.array(pieces.piece_id.tolist()))
    }
    for column in PIECE_COLUMNS_IN_NOTES if with_metadata else []:
        codes, names = pd.factorize(pieces[column].astype(str))
        data[column] = pa.DictionaryArray.from_arrays(
            codes.astype(np.int32)[piece_index], pa.array(list(names), pa.string())
        )
    for name in columns:  # zero-copy: one chunk per piece, no 7 M-row concatenation
        data[name] = pa.chunked_array([p[name] for p in parts])
    rows = pd.Series(lengths).groupby(pieces.split.to_numpy(), sort=False).sum()
    return pa.table(data), {str(k): int(v) for k, v in rows.items()}


def _library_versions() -> dict[str, str]:
    names = ["symusic", "pyarrow", "pandas", "numpy"]
    return {name: importlib.metadata.version(name) for name in names}
