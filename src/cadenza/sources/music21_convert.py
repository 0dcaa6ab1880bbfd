"""Convert scores music21 can read (its own corpus, **kern, ABC) to MIDI, in a process pool.

Why music21: it ships a real, redistributable, offline corpus (the Bach chorales, an ABC copy
of the Essen songs) and reads Humdrum **kern. Conversion is slow (about 0.3 s a piece), hence
the process pool (`cadenza.parallel`). A piece music21 cannot convert (bwv277's repeats cannot
be expanded), or whose worker process dies, becomes a manifest row with its reason instead of
stopping the stage. An ABC file holding many tunes gives one row per tune.

Pickups: music21 writes a score's time signature at beat 0 and nothing for an anacrusis, so
the bar lines of a piece that starts with a pickup (31 of the first 40 chorales, most folk
songs) would fall a pickup's length early. `_mark_pickup` writes the pickup as a short bar
(1/4 then 4/4, as notation programs export it); the notes do not move.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from cadenza.config import RunnerParams
from cadenza.io import atomic_path, sha256_file
from cadenza.parallel import WorkerDied, map_ordered

log = logging.getLogger(__name__)

# (piece id, what to parse: "music21:<corpus name>", a file path, or "<path>#<n>" for tune
# number n of a file that holds many, such as an ABC collection)
Job = tuple[str, str]
Task = tuple[str, str, Path]  # a job and the output folder: what a worker process gets


def convert_all(jobs: list[Job], out: Path, workers: int, desc: str) -> list[dict]:
    """Convert every job to `out/midi/<piece id>.mid`; return one manifest row per piece."""
    tasks: list[Task] = [(piece_id, what, out) for piece_id, what in jobs]
    log.info("%s: converting %d scores with music21 on %d workers", desc, len(tasks), workers)
    runner = RunnerParams(kind="serial" if workers == 1 else "process", workers=workers)
    results = map_ordered(_convert, tasks, runner)
    rows = [
        row
        for task, result in zip(
            tasks, tqdm(results, total=len(tasks), desc=desc, unit="score"), strict=True
        )
        for row in _rows(task, result)
    ]
    bad = [r for r in rows if r["status"] != "ok"]
    for row in bad:
        log.warning("rejected %s: %s", row["piece_id"], row["reason"])
    log.info("%s: converted %d, rejected %d", desc, len(rows) - len(bad), len(bad))
    return rows


def _rows(task: Task, result: list[dict] | WorkerDied) -> list[dict]:
    """A task's manifest rows; a score whose conversion killed its worker is rejected."""
    if isinstance(result, WorkerDied):
        piece_id, what, _ = task
        return [_row(piece_id, what, reason=f"the worker process died ({result.how})")]
    return result


def _convert(task: Task) -> list[dict]:
    from music21 import converter, corpus, stream

    piece_id, what, out = task
    try:
        if what.startswith("music21:"):
            parsed = corpus.parse(what.removeprefix("music21:"))
        elif "#" in what:
            path, number = what.rsplit("#", 1)
            parsed = converter.parse(path, number=int(number))
        else:
            parsed = converter.parse(what)
    except Exception as err:  # noqa: BLE001 - any music21 failure is a rejected piece
        return [_row(piece_id, what, reason=f"{type(err).__name__}: {err}")]
    if isinstance(parsed, stream.Opus):
        scores = [(f"{piece_id}/{i:04d}", s) for i, s in enumerate(parsed.scores)]
    else:
        scores = [(piece_id, parsed)]
    return [_write(pid, score, what, out) for pid, score in scores]


def _write(piece_id: str, score, what: str, out: Path) -> dict:
    from music21 import midi

    try:
        _mark_pickup(score)
        midi_file = midi.translate.music21ObjectToMidiFile(score)
        rel = f"midi/{piece_id}.mid"
        with atomic_path(out / rel) as tmp:
            midi_file.open(str(tmp), "wb")
            midi_file.write()
            midi_file.close()
    except Exception as err:  # noqa: BLE001
        return _row(piece_id, what, reason=f"{type(err).__name__}: {err}")
    row = _row(piece_id, what, title=_title(score, piece_id))
    row.update(path=rel, sha256=sha256_file(out / rel))
    return row


def _mark_pickup(score) -> None:
    """Give a first bar shorter than its time signature a time signature of its own length.

    Every part is marked alike, so the MIDI tracks agree on the bar lines (music21 repeats the
    marked bar where it expands a repeat back to the start, as the score plays)."""
    from music21 import meter, stream

    for part in score.getElementsByClass(stream.Part) or [score]:
        measures = part.getElementsByClass(stream.Measure)
        if len(measures) < 2:
            continue
        first = measures[0]
        signature = first.timeSignature or first.getContextByClass(meter.TimeSignature)
        if signature is None:
            continue
        have = Fraction(first.duration.quarterLength)
        if not 0 < have < Fraction(signature.barDuration.quarterLength):
            continue
        # the pickup's length over the signature's own denominator, halved until it counts
        # whole beats (a dotted-eighth pickup in 4/4 is 3/16)
        denominator = signature.denominator
        while (have * denominator / 4).denominator != 1 and denominator < 64:
            denominator *= 2
        beats = have * denominator / 4
        if beats.denominator != 1:
            continue
        if measures[1].timeSignature is None:
            measures[1].timeSignature = meter.TimeSignature(signature.ratioString)
        first.timeSignature = meter.TimeSignature(f"{beats.numerator}/{denominator}")


def _row(piece_id: str, what: str, title: str = "", reason: str = "") -> dict:
    return {
        "piece_id": piece_id,
        "title": title or piece_id,
        "source_path": what,
        "format": "midi",
        "path": "",
        "sha256": "",
        "status": "rejected" if reason else "ok",
        "reason": reason,
    }


def _title(score, fallback: str) -> str:
    meta = score.metadata
    title = (meta.title or meta.movementName or "") if meta is not None else ""
    return title.removesuffix(".mxl").removesuffix(".xml") or fallback
