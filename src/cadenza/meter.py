"""Meter: time-signature changes, and the bar lines they put on a step grid.

Why a module of its own: EB, UPC, TD, groove consistency and Yang & Lerch's per-bar features
all cut a piece into bars, and a bar is only right when it follows every time-signature change
at its exact length. A bar of n/d lasts n * 4 / d quarter notes, so 3/8 is 1.5 beats: 36 steps
at 24 steps per beat, where rounding to whole beats made it 2 (issue #17). A time signature
that falls inside a bar starts a new bar there (the old bar is cut short), as notation
software reads such files.

A piece's meter travels through the pieces table as text, `"4/4@0 3/8@12.5"` (numerator /
denominator @ onset in quarter beats), readable by a person and by `parse_meter`.
"""

from __future__ import annotations

import numpy as np

Meter = tuple[tuple[float, int, int], ...]  # (onset in quarter beats, numerator, denominator)
COMMON_TIME: Meter = ((0.0, 4, 4),)


def format_meter(meter: Meter) -> str:
    return " ".join(f"{num}/{den}@{_beat_text(at)}" for at, num, den in meter)


def _beat_text(at: float) -> str:
    """`at` in 6 significant digits, more where 6 would move it by over a microbeat.

    Why: six digits cut a change at beat 10000.25 to 10000.2, and every later bar line of
    the piece moved a step; a float32 tick time such as 0.00520833348855 keeps its short form."""
    for digits in range(6, 17):
        text = f"{at:.{digits}g}"
        if abs(float(text) - at) <= 1e-6:
            return text
    return f"{at:.17g}"  # exact


def parse_meter(text: str) -> Meter:
    """The inverse of `format_meter`; an empty string is 4/4."""
    out = []
    for part in text.split():
        signature, at = part.split("@")
        num, den = signature.split("/")
        out.append((float(at), int(num), int(den)))
    return tuple(out) or COMMON_TIME


def main_meter(meter: Meter, end_beats: float) -> tuple[int, int]:
    """The time signature that covers most of a piece's beats (a pickup's short bar or a
    passing change loses to the meter around it); ties go to the earlier one."""
    spans: dict[tuple[int, int], float] = {}
    for i, (at, num, den) in enumerate(meter):
        until = meter[i + 1][0] if i + 1 < len(meter) else max(end_beats, at)
        spans[(num, den)] = spans.get((num, den), 0.0) + until - at
    return max(spans, key=lambda signature: spans[signature]) if spans else (4, 4)


def bar_lines(meter: Meter, steps_per_beat: int, n_steps: int) -> np.ndarray:
    """The start step of every bar covering steps 0 .. n_steps - 1 (at least one bar).

    Bar lengths are rounded to whole steps only when the grid cannot hold them exactly
    (e.g. 3/64 at 4 steps per beat), and never below one step.
    """
    starts: list[int] = []
    changes = [(round(at * steps_per_beat), num, den) for at, num, den in meter]
    if not changes or changes[0][0] > 0:
        changes.insert(0, (0, 4, 4))
    for i, (at, num, den) in enumerate(changes):
        until = changes[i + 1][0] if i + 1 < len(changes) else max(n_steps, at + 1)
        length = max(round(num * 4 * steps_per_beat / den), 1)
        starts.extend(range(at, until, length))
    starts_arr = np.unique(np.asarray(starts, dtype=np.int64))
    return starts_arr[starts_arr < max(n_steps, 1)]  # a late meter change adds no empty bars


def bar_index(steps: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The bar each step falls in."""
    return np.searchsorted(starts, np.asarray(steps), side="right") - 1


def beat_windows(
    starts: np.ndarray, n_steps: int, steps_per_beat: int
) -> tuple[np.ndarray, np.ndarray]:
    """Beats that restart at every bar line: (window start steps, bar of each window).

    TD measures harmony per beat and averages per bar; a 3/8 bar (1.5 beats) holds one beat
    and a half-beat, so no beat straddles a bar line.
    """
    ends = np.append(starts[1:], max(n_steps, int(starts[-1]) + 1))
    windows = [np.arange(s, e, steps_per_beat) for s, e in zip(starts, ends, strict=True)]
    bars = np.repeat(np.arange(len(starts)), [len(w) for w in windows])
    return np.concatenate(windows), bars
