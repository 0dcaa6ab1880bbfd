"""`report`: every section in reading order -> `reports/report.md`, `reports/index.html` and
`reports/metrics.csv` (one row per reference row and model, index column `column`)."""

from __future__ import annotations

import logging
from pathlib import Path

from cadenza.config import Params
from cadenza.io import atomic_path
from cadenza.listening import REAL
from cadenza.report.charts import plot_losses, plot_metric_bars
from cadenza.report.document import Figure, Section
from cadenza.report.leaderboard import leaderboard_sections
from cadenza.report.media import audio_note, embeddings_section, listening_section, sample_figures
from cadenza.report.provenance import git_commit, provenance_sections
from cadenza.report.render import render_html, render_markdown, write_text
from cadenza.report.sources import source_sections
from cadenza.report.tables import (
    metric_sections,
    metrics_table,
    read_models,
    read_reference,
    yang_lerch_sections,
)

log = logging.getLogger(__name__)


def build_report(
    metrics_dir: Path,
    train_logs: Path,
    generated: Path,
    out_md: Path,
    out_html: Path,
    out_csv: Path,
    plots: Path,
    *,
    audio: Path | None = None,
    excerpts: Path | None = None,
    embeddings: Path | None = None,
    listening: Path | None = None,
    prepared: Path | None = None,
    params: Params | None = None,
) -> None:
    """All sections. `prepared` (the prepare stage's folder) and `params` give the
    provenance and the preferred sources; they, `audio`, `excerpts`, `embeddings` and
    `listening` are optional (a missing one gives a line saying what is missing)."""
    plots.mkdir(parents=True, exist_ok=True)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    table = metrics_table(metrics_dir)
    with atomic_path(out_csv) as tmp:  # one row per model or reference row: `dvc plots`
        table.rename_axis("column").to_csv(tmp)
    reference = read_reference(metrics_dir)
    model_metrics = read_models(metrics_dir)
    models = list(model_metrics)
    # DVC runs every stage at the project root
    sections = provenance_sections(prepared, params, git_commit(Path.cwd()))
    sections += leaderboard_sections(model_metrics, reference, params)
    sections += source_sections(model_metrics, reference)
    sections += metric_sections(table)
    sections += yang_lerch_sections(model_metrics)
    sections.append(
        Section(
            "Metric charts",
            figures=[
                Figure(
                    plot_metric_bars(table, plots / "metrics.png"),
                    "each metric: models as bars, the reference rows as vertical lines",
                )
            ],
        )
    )
    loss_png = plot_losses(train_logs, models, plots / "loss.png")
    if loss_png:
        sections.append(
            Section(
                "Loss curves",
                figures=[
                    Figure(loss_png, "train and validation loss per epoch, one panel per model")
                ],
            )
        )
    if embeddings is not None:
        sections.append(embeddings_section(embeddings))
    sections.append(listening_section(listening))
    if audio is not None:
        sections.append(Section("Audio", audio_note(audio, [*models, REAL])))
    if excerpts is not None:
        sections.append(
            Section(
                "Real test excerpts",
                "Cut to the samples' clip length; hear these beside the samples.",
                figures=sample_figures(excerpts, REAL, audio, plots),
            )
        )
    for model in models:
        figures = sample_figures(generated / model, model, audio, plots)
        sections.append(
            Section(f"Samples: {model}", "" if figures else "No samples.", figures=figures)
        )
    write_text(out_md, render_markdown(sections, out_md))
    write_text(out_html, render_html(sections, out_html))
    log.info("report -> %s, %s, %s", out_md, out_html, out_csv)
