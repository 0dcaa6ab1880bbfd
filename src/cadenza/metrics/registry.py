"""Every metric the pipeline writes, in one table: name, group, unit, better direction, citation
and, for the per-piece music metrics, the function that computes it.

`evaluate` computes the music metrics from this table, `compare` judges a change by its
`better` direction and `report` builds its columns, leaderboard and tables from it, so adding
a model-level metric is one function, one entry here and one test. Torch-free on purpose:
`cadenza report` and `cadenza compare` read this table without loading any model code.

A music metric is judged by its distance from the real test data ("closer to test"), not by
its size: a model should sound like the music it learned from, not maximise the pitch classes
it uses. The `reference` stage (`reports/metrics/reference.json`) holds those real-data values
in the rows REFERENCE_ROWS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cadenza.metrics import musegan, muspy_set
from cadenza.metrics.yang_lerch import PieceNotes

Better = Literal["lower", "higher", "closer to test", ""]
Group = Literal["music", "likelihood", "yang_lerch", "count"]
CLOSER: Better = "closer to test"

# the reference stage's metrics file (its stem) and its rows: the training data, the test
# data, and the test data with the accompaniment's bars shuffled (MuseGAN's check on TD)
REFERENCE = "reference"
TEST_ROW = "test"
REFERENCE_ROWS = ["train", TEST_ROW, "test_shuffled_bars"]

# the report's metric tables, in page order (each fits a page's width)
MUSEGAN_TABLE = "MuseGAN"
PITCH_TABLE = "pitch (MusPy)"
RHYTHM_TABLE = "rhythm and polyphony (MusPy)"
LIKELIHOOD_TABLE = "likelihood and Yang & Lerch"
TABLES = [MUSEGAN_TABLE, PITCH_TABLE, RHYTHM_TABLE, LIKELIHOOD_TABLE]

MUSEGAN = (
    'Dong et al., "MuseGAN: Multi-track Sequential Generative Adversarial Networks for '
    'Symbolic Music Generation and Accompaniment", AAAI 2018'
)
MUSPY = (
    'Dong, Chen, Dong & Yang, "MusPy: A Toolkit for Symbolic Music Generation", ISMIR 2020 '
    "(muspy.metrics)"
)
YANG_LERCH = (
    'Yang & Lerch, "On the evaluation of generative models in music", Neural Computing and '
    "Applications 32, 2020"
)
BOULANGER = (
    'Boulanger-Lewandowski, Bengio & Vincent, "Modeling Temporal Dependencies in '
    'High-Dimensional Sequences", ICML 2012'
)
BAY = 'Bay, Ehmann & Downie, "Evaluation of Multiple-F0 Estimation and Tracking Systems", 2009'


@dataclass(frozen=True)
class Piece:
    """One piece as the music metrics read it: its notes on the metric grid and the views of
    them that several metrics share, computed once per piece rather than once per metric."""

    notes: PieceNotes
    roll: np.ndarray  # (T, 128) bool, T = the last offset
    top: np.ndarray  # the roll's top voice (MuseGAN's melody) ...
    rest: np.ndarray  # ... and everything under it (the accompaniment)
    active: np.ndarray  # (bars, 128): pitches sounding in each bar
    counts: np.ndarray  # (T,): pitches sounding at each step
    qualified_min_steps: int  # QN's shortest qualified note


@dataclass(frozen=True)
class Metric:
    """One metric. `compute` is set for the per-piece music metrics only: the others are
    computed over a whole split at once (`cadenza.evaluate`). `condition` says when a metric
    is absent from a model's metrics file ('' = every evaluated model has it)."""

    name: str
    group: Group
    unit: str
    better: Better  # '' = no preferred direction (a count, a diagnostic share)
    citation: str  # the paper defining it; '' where no single paper does
    compute: Callable[[Piece], float] | None = None
    headline: str = ""  # the abbreviation the leaderboard ranks it under; '' = not ranked
    table: str = ""  # the report's metric table it is a column of; '' = none
    condition: str = ""


_ENTRIES = [
    Metric(
        "empty_bar_ratio",
        "music",
        "share of bars",
        CLOSER,
        MUSEGAN,
        lambda x: musegan.empty_bar_ratio(x.active),
        headline="EB",
        table=MUSEGAN_TABLE,
    ),
    Metric(
        "used_pitch_classes",
        "music",
        "pitch classes per bar",
        CLOSER,
        MUSEGAN,
        lambda x: musegan.used_pitch_classes(x.active),
        headline="UPC",
        table=MUSEGAN_TABLE,
    ),
    Metric(
        "qualified_note_ratio",
        "music",
        "share of notes",
        CLOSER,
        MUSEGAN,
        lambda x: musegan.qualified_note_ratio(x.notes.end - x.notes.start, x.qualified_min_steps),
        headline="QN",
        table=MUSEGAN_TABLE,
    ),
    Metric(
        "tonal_distance",
        "music",
        "distance in tonal-centroid space",
        CLOSER,
        MUSEGAN,
        lambda x: musegan.tonal_distance(x.top, x.rest, x.notes.steps_per_beat, x.notes.bar_starts),
        headline="TD",
        table=MUSEGAN_TABLE,
    ),
    Metric(
        "pitch_range",
        "music",
        "semitones",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.pitch_range(x.notes.pitch),
        table=PITCH_TABLE,
    ),
    Metric(
        "n_pitches_used",
        "music",
        "pitches",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.n_pitches_used(x.notes.pitch),
        table=PITCH_TABLE,
    ),
    Metric(
        "n_pitch_classes_used",
        "music",
        "pitch classes",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.n_pitch_classes_used(x.notes.pitch),
        table=PITCH_TABLE,
    ),
    Metric(
        "polyphony",
        "music",
        "pitches per sounding step",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.polyphony(x.counts),
        table=RHYTHM_TABLE,
    ),
    Metric(
        "polyphony_rate",
        "music",
        "share of steps",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.polyphony_rate(x.counts),
        table=RHYTHM_TABLE,
    ),
    Metric(
        "pitch_in_scale_rate",
        "music",
        "share of notes",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.pitch_in_scale_rate(x.notes.pitch),
        table=PITCH_TABLE,
    ),
    Metric(
        "scale_consistency",
        "music",
        "share of notes",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.scale_consistency(x.notes.pitch),
        table=PITCH_TABLE,
    ),
    Metric(
        "pitch_entropy",
        "music",
        "bits",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.pitch_entropy(x.notes.pitch),
        table=PITCH_TABLE,
    ),
    Metric(
        "pitch_class_entropy",
        "music",
        "bits",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.pitch_class_entropy(x.notes.pitch),
        table=PITCH_TABLE,
    ),
    Metric(
        "empty_beat_rate",
        "music",
        "share of beats",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.empty_rate(x.counts, x.notes.steps_per_beat),
        table=RHYTHM_TABLE,
    ),
    Metric(
        "groove_consistency",
        "music",
        "1 - mean Hamming distance of adjacent bars' onsets",
        CLOSER,
        MUSPY,
        lambda x: muspy_set.groove_consistency(x.notes.start, x.notes.bar_starts, len(x.roll)),
        table=RHYTHM_TABLE,
    ),
    Metric(
        "valid_loss",
        "likelihood",
        "the family's training loss",
        "lower",
        "",
        table=LIKELIHOOD_TABLE,
    ),
    Metric(
        "nll",
        "likelihood",
        "nats per known token",
        "lower",
        "",
        table=LIKELIHOOD_TABLE,
        condition="token models",
    ),
    Metric(
        "perplexity",
        "likelihood",
        "exp(nats per known token)",
        "lower",
        "",
        table=LIKELIHOOD_TABLE,
        condition="token models",
    ),
    Metric(
        "accuracy",
        "likelihood",
        "share of tokens",
        "higher",
        "",
        table=LIKELIHOOD_TABLE,
        condition="token models",
    ),
    Metric("unk_share", "likelihood", "share of tokens", "", "", condition="token models"),
    Metric(
        "frame_nll",
        "likelihood",
        "nats per frame",
        "lower",
        BOULANGER,
        table=LIKELIHOOD_TABLE,
        condition="piano-roll models with per-pitch sigmoids",
    ),
    Metric(
        "frame_accuracy",
        "likelihood",
        "TP / (TP + FP + FN) over frames",
        "higher",
        BAY,
        table=LIKELIHOOD_TABLE,
        condition="piano-roll models with per-pitch sigmoids",
    ),
    Metric(
        "yl_mean_oa",
        "yang_lerch",
        "overlap area",
        "higher",
        YANG_LERCH,
        table=LIKELIHOOD_TABLE,
        condition="per-source rows of multi-source models; the report's column of "
        "yang_lerch.mean.oa",
    ),
    Metric(
        "yl_mean_kl",
        "yang_lerch",
        "nats",
        "lower",
        YANG_LERCH,
        table=LIKELIHOOD_TABLE,
        condition="the report's column of yang_lerch.mean.kl",
    ),
    Metric("oa", "yang_lerch", "overlap area", "higher", YANG_LERCH),  # yang_lerch.<feature>.oa
    Metric("kl", "yang_lerch", "nats", "lower", YANG_LERCH),  # yang_lerch.<feature>.kl
    Metric("n_pieces", "count", "pieces", "", ""),
    Metric("empty_samples", "count", "samples", "lower", ""),
    Metric("n_test_pieces", "count", "pieces", "", "", condition="per-source rows (test)"),
    Metric("n_valid_pieces", "count", "pieces", "", "", condition="per-source rows (valid)"),
]
METRICS: dict[str, Metric] = {m.name: m for m in _ENTRIES}


def names(group: Group) -> list[str]:
    """The metrics of one group, in registry order (the order of the report's columns)."""
    return [m.name for m in METRICS.values() if m.group == group]


MUSIC = names("music")


def music_metrics() -> list[Metric]:
    """The per-piece music metrics, each with its `compute`."""
    return [METRICS[name] for name in MUSIC]


def direction(name: str) -> Better:
    """The better direction of a metric name ('' for a name the registry does not hold)."""
    metric = METRICS.get(name)
    return metric.better if metric else ""


def table_columns(table: str | None = None) -> list[str]:
    """The columns of one of the report's metric tables, or of all of them (None)."""
    return [m.name for m in METRICS.values() if m.table and table in (None, m.table)]


def headline() -> dict[str, str]:
    """{name: abbreviation} of the music metrics the leaderboard ranks."""
    return {m.name: m.headline for m in METRICS.values() if m.headline}
