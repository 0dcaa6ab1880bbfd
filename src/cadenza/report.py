"""`report`: metrics, loss curves and samples -> `reports/report.md` with PNG plots.

The report is for people: one table of models x metrics with the test data as the reference
row, the loss curves, and a piano roll of one sample per model with a link to its MIDI file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cadenza.evaluate import MUSIC_METRICS  # noqa: E402
from cadenza.io import atomic_path, read_json  # noqa: E402
from cadenza.prepare.parse import RejectedPiece, parse_midi  # noqa: E402
from cadenza.representations.rolls import notes_to_roll  # noqa: E402

log = logging.getLogger(__name__)

REFERENCE = "reference"
LIKELIHOOD = ["nll", "perplexity", "accuracy"]


def build_report(metrics_dir: Path, train_logs: Path, generated: Path, out_md: Path,
                 plots: Path) -> Path:
    plots.mkdir(parents=True, exist_ok=True)
    table = metrics_table(metrics_dir)
    models = [m for m in table.index if m != REFERENCE]
    lines = ["# Cadenza report", "",
             "Music metrics are means over pieces (MuseGAN definitions at 24 steps per beat; "
             "see the README). `reference` is the test split itself. Likelihood metrics are "
             "teacher-forced on the test split.", "",
             "## Metrics", "", _markdown_table(table), ""]

    loss_png = plot_losses(train_logs, models, plots / "loss.png")
    if loss_png:
        lines += ["## Loss curves", "", f"![loss curves]({_rel(loss_png, out_md)})", ""]

    lines += ["## Samples", ""]
    for model in models:
        samples = sorted((generated / model).glob("*.mid"))
        if not samples:
            lines += [f"- {model}: no samples", ""]
            continue
        png = plot_roll(samples[0], plots / f"{model}_roll.png", title=f"{model}: "
                        f"{samples[0].name}")
        links = ", ".join(f"[{p.name}]({_rel(p, out_md)})" for p in samples)
        lines += [f"### {model}", ""]
        if png:
            lines += [f"![{model} piano roll]({_rel(png, out_md)})", ""]
        lines += [f"MIDI: {links}", ""]
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines))
    log.info("report -> %s", out_md)
    return out_md


def metrics_table(metrics_dir: Path) -> pd.DataFrame:
    rows = {p.stem: read_json(p) for p in sorted(metrics_dir.glob("*.json"))}
    table = pd.DataFrame.from_dict(rows, orient="index")
    columns = [c for c in MUSIC_METRICS + LIKELIHOOD + ["n_pieces"] if c in table.columns]
    order = [REFERENCE] + sorted(i for i in table.index if i != REFERENCE)
    return table.reindex(index=[i for i in order if i in table.index], columns=columns)


def plot_losses(train_logs: Path, models: list[str], out: Path) -> Path | None:
    logs = {m: pd.read_csv(train_logs / f"{m}.csv") for m in models
            if (train_logs / f"{m}.csv").exists()}
    if not logs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (model, frame) in enumerate(logs.items()):
        color = f"C{i}"
        ax.plot(frame.epoch, frame.train_loss, color=color, label=f"{model} train")
        ax.plot(frame.epoch, frame.valid_loss, color=color, linestyle="--",
                label=f"{model} valid")
    ax.set(xlabel="epoch", ylabel="cross-entropy (nats/token)", title="Loss curves")
    ax.legend(fontsize=8)
    return _save(fig, out)


def plot_roll(midi: Path, out: Path, title: str, steps_per_beat: int = 4) -> Path | None:
    try:
        notes = parse_midi(midi, "all").notes
    except RejectedPiece as err:
        log.warning("%s: no piano roll (%s)", midi, err)
        return None
    roll = notes_to_roll(notes["onset_beats"], notes["duration_beats"], notes["pitch"],
                         steps_per_beat)
    low, high = int(notes["pitch"].min()) - 2, int(notes["pitch"].max()) + 3
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.imshow(roll[:, low:high].T, aspect="auto", origin="lower", cmap="Greys",
              interpolation="nearest", extent=(0, len(roll) / steps_per_beat, low, high))
    ax.set(xlabel="beat", ylabel="MIDI pitch", title=title)
    return _save(fig, out)


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def _markdown_table(table: pd.DataFrame) -> str:
    header = "| model | " + " | ".join(table.columns) + " |"
    sep = "|---|" + "---:|" * len(table.columns)
    body = ["| " + str(name) + " | " + " | ".join(_cell(v) for v in row) + " |"
            for name, row in table.iterrows()]
    return "\n".join([header, sep, *body])


def _cell(value: float) -> str:
    return "-" if pd.isna(value) else f"{value:.3f}"


def _rel(path: Path, md: Path) -> str:
    return os.path.relpath(path, md.parent)
