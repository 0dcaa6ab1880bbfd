"""The report as data: sections of text, tables and figures, which `render` writes as
markdown and as HTML, so that both files always hold the same content."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Figure:
    """A PNG with its caption and, for a piece, the files a reader can open or play."""

    png: Path
    caption: str
    link: Path | None = None  # e.g. the sample's MIDI file
    audio: Path | None = None  # the sample's rendered clip


@dataclass(frozen=True)
class Section:
    """A heading and what follows it, in this order: text, bullets, table, figures."""

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figures: list[Figure] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # a bullet list after the text
    best: pd.DataFrame | None = None  # True where a `table` cell is its column's best
    level: int = 2  # heading level: 3 for the tables under one topic


def num(value: object) -> float:
    """A metric value as float; NaN for None, strings and other non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return math.nan
    return float(value)
