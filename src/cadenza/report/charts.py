"""The report's figures: metric bars (models as bars, reference rows as lines), one loss
panel per model, and a piano roll per MIDI file. PNGs at a fixed dpi, written atomically."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.typing import LineStyleType

from cadenza.metrics.registry import REFERENCE
from cadenza.plotting import plt, save_png
from cadenza.prepare.parse import RejectedPiece, parse_midi
from cadenza.representations.rolls import notes_to_roll

log = logging.getLogger(__name__)


REFERENCE_LINES: dict[str, tuple[str, LineStyleType]] = {
    "train": ("0.45", "--"),
    "test": ("black", "-"),
    "test_shuffled_bars": ("0.45", ":"),
}


def plot_metric_bars(table: pd.DataFrame, out: Path) -> Path:
    """One panel per metric: a horizontal bar per model, named in full on the y axis, and
    the reference rows as vertical lines; panels grow with the number of models so that
    every name stays readable."""
    is_ref = table.index.str.startswith(f"{REFERENCE}:")
    refs, models = table[is_ref], table[~is_ref]
    metrics = [m for m in table.columns if m != "n_pieces" and table[m].notna().any()]
    n_cols = 3
    n_rows = max(-(-len(metrics) // n_cols), 1)
    panel_height = 1.0 + 0.26 * max(len(models), 1)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(5.5 * n_cols, panel_height * n_rows),
        squeeze=False,
        layout="constrained",
    )
    y = np.arange(len(models))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        values = models[metric].to_numpy(dtype=float)
        ax.barh(y, np.nan_to_num(values), color="C0")
        for i in np.flatnonzero(np.isnan(values)):
            ax.text(0, i, " n/a", va="center", fontsize=8, color="0.4")
        for row, value in refs[metric].items():
            color, style = REFERENCE_LINES.get(row.split(":", 1)[1], ("0.6", "-."))
            if np.isfinite(value):
                ax.axvline(value, color=color, linestyle=style, linewidth=1.2)
        ax.set_yticks(y, list(models.index), fontsize=8)
        ax.set_ylim(len(models) - 0.5, -0.5)  # first model at the top
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    shown = [r.split(":", 1)[1] for r in refs.index]
    if shown:
        handles = [
            Line2D(
                [],
                [],
                color=REFERENCE_LINES.get(r, ("0.6", "-."))[0],
                linestyle=REFERENCE_LINES.get(r, ("0.6", "-."))[1],
                label=f"reference: {r}",
            )
            for r in shown
        ]
        fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=9)
    return save_figure(fig, out)


def plot_losses(train_logs: Path, models: list[str], out: Path) -> Path | None:
    """One small panel per model (28 curves in one axes cannot be told apart), with one
    legend above the grid."""
    logs = {
        m: pd.read_csv(train_logs / f"{m}.csv")
        for m in models
        if (train_logs / f"{m}.csv").exists()
    }
    logs = {m: frame for m, frame in logs.items() if len(frame)}
    if not logs:
        return None
    n_cols = min(4, len(logs))
    n_rows = -(-len(logs) // n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(3.6 * n_cols, 2.6 * n_rows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax, (model, frame) in zip(axes.flat, logs.items(), strict=False):
        ax.plot(frame.epoch, frame.train_loss, color="C0", marker=".")
        ax.plot(frame.epoch, frame.valid_loss, color="C1", linestyle="--", marker=".")
        ax.set_title(model, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (nats)", fontsize=8)
    for ax in axes.flat[len(logs) :]:
        ax.axis("off")
    fig.legend(
        handles=[
            Line2D([], [], color="C0", marker=".", label="train"),
            Line2D([], [], color="C1", linestyle="--", marker=".", label="valid"),
        ],
        loc="outside upper center",
        ncol=2,
        fontsize=9,
    )
    return save_figure(fig, out)


def plot_roll(midi: Path, out: Path, title: str, steps_per_beat: int = 4) -> Path | None:
    try:
        notes = parse_midi(midi, "all").notes
    except RejectedPiece as err:
        log.warning("%s: no piano roll (%s)", midi, err)
        return None
    roll = notes_to_roll(
        notes["onset_beats"], notes["duration_beats"], notes["pitch"], steps_per_beat
    )
    low, high = int(notes["pitch"].min()) - 2, int(notes["pitch"].max()) + 3
    fig, ax = plt.subplots(figsize=(9, 2.6))
    ax.imshow(
        roll[:, low:high].T,
        aspect="auto",
        origin="lower",
        cmap="Greys",
        interpolation="nearest",
        extent=(0, len(roll) / steps_per_beat, low, high),
    )
    ax.set(xlabel="beat", ylabel="MIDI pitch", title=title)
    return save_figure(fig, out)


def save_figure(fig: plt.Figure, out: Path) -> Path:
    """The report's figures at one dpi, laid out tight unless the figure chose its own layout."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    return save_png(fig, out, dpi=100)
