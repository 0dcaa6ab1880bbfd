"""`report`: metrics, loss curves and samples -> `reports/report.md` and `reports/index.html`.

The report is for people. Both files hold the same sections: the metrics table (metrics as
rows; the reference rows, then the models, as columns), Yang & Lerch's OA/KL table, a bar
chart per metric, the loss curves, t-SNE maps of the learned embeddings, the blind listening
test's results, and a piano roll of every sample and real excerpt linked to its MIDI file and
its audio clip (or, where no synthesizer was installed, one line saying so).
The HTML references only local files (the PNGs, audio and MIDI beside it), so it opens offline.
"""

from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cadenza.audio import INSTALL_HINT, read_status  # noqa: E402
from cadenza.evaluate import MUSIC_METRICS, REFERENCE_ROWS  # noqa: E402
from cadenza.io import atomic_path, read_json  # noqa: E402
from cadenza.listening import REAL, power_analysis, power_text, results_table  # noqa: E402
from cadenza.metrics.yang_lerch import FEATURES  # noqa: E402
from cadenza.prepare.parse import RejectedPiece, parse_midi  # noqa: E402
from cadenza.representations.rolls import notes_to_roll  # noqa: E402

log = logging.getLogger(__name__)

REFERENCE = "reference"
LIKELIHOOD = ["valid_loss", "nll", "perplexity", "accuracy", "frame_nll", "frame_accuracy"]
YANG_LERCH = ["yl_mean_oa", "yl_mean_kl"]
INTRO = ("Music metrics are means over pieces, on a 24-steps-per-beat grid (definitions and "
         "citations in the README). The reference columns are the training data, the test "
         "data, and the test data with the accompaniment's bars shuffled against the melody "
         "(MuseGAN's check: tonal distance must rise). Likelihood metrics are teacher-forced on "
         "the test split. `yl_mean_oa` / `yl_mean_kl` are the mean Yang & Lerch overlap area "
         "(1 = as close to the test set as it is to itself) and KL divergence over 11 "
         "features.")


@dataclass
class Figure:
    png: Path
    caption: str
    link: Path | None = None  # e.g. the sample's MIDI file
    audio: Path | None = None  # the sample's rendered clip


@dataclass
class Section:
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figures: list[Figure] = field(default_factory=list)


def build_report(metrics_dir: Path, train_logs: Path, generated: Path, out_md: Path,
                 out_html: Path, out_csv: Path, plots: Path, *, audio: Path | None = None,
                 excerpts: Path | None = None, embeddings: Path | None = None,
                 listening: Path | None = None) -> None:
    """All sections; `audio`, `excerpts`, `embeddings` and `listening` are optional inputs
    (a missing one gives a line saying what is missing instead of its section)."""
    plots.mkdir(parents=True, exist_ok=True)
    table = metrics_table(metrics_dir)
    with atomic_path(out_csv) as tmp:  # one row per column: what `dvc plots` charts
        table.T.rename_axis("column").to_csv(tmp)
    models = [c for c in table.columns if not c.startswith(REFERENCE)]
    sections = [Section("Metrics", INTRO, table)]
    yl = yang_lerch_table(metrics_dir, models)
    if yl is not None:
        sections.append(Section(
            "Closeness to real music (Yang & Lerch 2018)",
            "Per feature: overlap area (OA, higher is closer) and KL divergence (lower is "
            "closer) between the test set's intra-set distances and the samples-to-test "
            "distances; test excerpts are cut to the samples' median length.", yl))
    sections.append(Section("Metric charts", figures=[
        Figure(plot_metric_bars(table, plots / "metrics.png"), "each metric, per column")]))
    loss_png = plot_losses(train_logs, models, plots / "loss.png")
    if loss_png:
        sections.append(Section("Loss curves", figures=[Figure(loss_png, "loss curves")]))
    if embeddings is not None:
        sections.append(embeddings_section(embeddings))
    sections.append(listening_section(listening))
    if audio is not None:
        sections.append(Section("Audio", audio_note(audio, [*models, REAL])))
    if excerpts is not None:
        sections.append(Section(
            "Real test excerpts", "Cut to the samples' clip length; hear these beside the "
            "samples.", figures=_sample_figures(excerpts, REAL, audio, plots)))
    for model in models:
        figures = _sample_figures(generated / model, model, audio, plots)
        sections.append(Section(f"Samples: {model}",
                                "" if figures else "No samples.", figures=figures))
    _write(out_md, render_markdown(sections, out_md))
    _write(out_html, render_html(sections, out_html))
    log.info("report -> %s, %s, %s", out_md, out_html, out_csv)


def _sample_figures(midi_dir: Path, name: str, audio: Path | None, plots: Path
                    ) -> list[Figure]:
    """A piano roll per MIDI file, linked to the MIDI and, where rendered, its audio clip."""
    clips = {v["midi"]: audio / name / clip for clip, v in
             read_status(audio / name).get("clips", {}).items()} if audio is not None else {}
    return [Figure(png, f"{name}: {midi.name}", midi, clips.get(midi.name))
            for midi in sorted(midi_dir.glob("*.mid"))
            if (png := plot_roll(midi, plots / f"{name}_{midi.stem}.png",
                                 f"{name}: {midi.name}"))]


def audio_note(audio: Path, names: list[str]) -> str:
    """One line: how the clips were made, or why there are none (then the MIDI is linked)."""
    statuses = [read_status(audio / n) for n in names]
    missing = [s["unavailable"] for s in statuses if s.get("unavailable")]
    if missing:
        return (f"No audio: {missing[0]}. The MIDI files are linked under each piece instead "
                f"(`{INSTALL_HINT}`, then `dvc repro -f render report`, renders them).")
    done = next((s for s in statuses if s.get("soundfont")), {})
    n = sum(len(s.get("clips", {})) for s in statuses)
    return (f"{n} clips: every sample and real excerpt cut (or padded) to "
            f"{done.get('clip_seconds', 0):g} s, rendered with FluidSynth and "
            f"{Path(done.get('soundfont', '?')).name} at {done.get('sample_rate', 0)} Hz; a "
            "player is under each piano roll.")


def embeddings_section(folder: Path) -> Section:
    """Seed 003's figs. 6 and 8: t-SNE maps of the learned embeddings."""
    maps = read_json(folder / "maps.json") if (folder / "maps.json").exists() else {}
    figures = [Figure(folder / png, f"{model}: t-SNE of the learned embeddings")
               for model, png in maps.items() if png.endswith(".png")]
    without = [m for m, png in maps.items() if not png.endswith(".png")]
    text = ("Circles are note-on tokens (for grid schemes: pitch or chord tokens), crosses "
            "note-off tokens, coloured by pitch from blue (low) to red (high); grey dots are "
            "rests, time shifts, velocities and special tokens, as in seed 003's figures 6 and "
            "8." + (f" No map (no per-symbol embedding): {', '.join(without)}." if without
                    else ""))
    return Section("Embedding maps (t-SNE)", text, figures=figures)


def listening_section(result_path: Path | None) -> Section:
    """The blind listening test's table when one was analysed; the power analysis always."""
    how = ("Run one with `cadenza listening-test make --n 12`, hand out the folder, then "
           "`cadenza listening-test analyze answers/*.json` and `dvc repro -f report` "
           "(README, section Listening).")
    if result_path is None or not result_path.exists():
        return Section("Listening test", f"No listening test analysed yet. {how} "
                       f"{power_text(power_analysis())}")
    result = read_json(result_path)
    text = (f"{result['n_listeners']} listener(s), {result['n_answers']} rating(s) on seed "
            "003's scale (1 = completely random noise, 5 = musically plausible, 10 = composed "
            "by a novice composer); `yes_*` is the share of yes on seed 004's questions; "
            f"`diff_vs_real` is the mean rating minus that of the real excerpts "
            f"(`{result['real']}`), with two-sided Welch t-test and Mann-Whitney p-values. "
            f"{power_text(result['power'])}")
    return Section("Listening test", text, results_table(result))


def metrics_table(metrics_dir: Path) -> pd.DataFrame:
    """Metrics as rows; `reference:train`, `reference:test`, ..., then one column per model."""
    columns: dict[str, dict] = {}
    reference = metrics_dir / f"{REFERENCE}.json"
    if reference.exists():
        rows = read_json(reference)
        for row in REFERENCE_ROWS:
            columns[f"{REFERENCE}:{row}"] = rows[row]
    for path in sorted(metrics_dir.glob("*.json")):
        if path.stem != REFERENCE:
            values = read_json(path)
            mean = values.get("yang_lerch", {}).get("mean", {})
            columns[path.stem] = {**values, "yl_mean_oa": mean.get("oa"),
                                  "yl_mean_kl": mean.get("kl")}
    table = pd.DataFrame(columns)
    rows = [r for r in MUSIC_METRICS + LIKELIHOOD + YANG_LERCH + ["n_pieces"]
            if r in table.index]
    return table.reindex(rows).apply(pd.to_numeric, errors="coerce")


def yang_lerch_table(metrics_dir: Path, models: list[str]) -> pd.DataFrame | None:
    """Features as rows; `<model> OA` and `<model> KL` columns."""
    columns = {}
    for model in models:
        per_feature = read_json(metrics_dir / f"{model}.json").get("yang_lerch") or {}
        for stat in ("oa", "kl"):
            columns[f"{model} {stat.upper()}"] = {f: per_feature[f][stat]
                                                  for f in [*FEATURES, "mean"]
                                                  if f in per_feature}
    return pd.DataFrame(columns) if columns else None


def plot_metric_bars(table: pd.DataFrame, out: Path) -> Path:
    """One small bar chart per metric: reference columns in greys, models in colours."""
    metrics = [m for m in table.index if m != "n_pieces"]
    n_cols = 4
    n_rows = -(-len(metrics) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.4 * n_rows),
                             squeeze=False)
    greys, hues = iter(["0.35", "0.6", "0.8"]), (f"C{i}" for i in range(100))
    colors = [next(greys, "0.5") if c.startswith(REFERENCE) else next(hues)
              for c in table.columns]
    labels = [c.removeprefix(f"{REFERENCE}:") for c in table.columns]
    for ax, metric in zip(axes.flat, metrics, strict=False):
        values = table.loc[metric].to_numpy(dtype=float)
        ax.bar(range(len(values)), np.nan_to_num(values), color=colors)
        ax.set_title(metric, fontsize=9)
        ax.set_xticks(range(len(values)), labels, rotation=45, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.flat[len(metrics):]:
        ax.axis("off")
    return _save(fig, out)


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
    fig, ax = plt.subplots(figsize=(9, 2.6))
    ax.imshow(roll[:, low:high].T, aspect="auto", origin="lower", cmap="Greys",
              interpolation="nearest", extent=(0, len(roll) / steps_per_beat, low, high))
    ax.set(xlabel="beat", ylabel="MIDI pitch", title=title)
    return _save(fig, out)


def render_markdown(sections: list[Section], out: Path) -> str:
    lines = ["# Cadenza report", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if s.table is not None:
            shown = s.table.astype(object).where(s.table.notna(), None)  # NaN -> "-"
            lines += [shown.to_markdown(floatfmt=".3f", missingval="-"), ""]
        for f in s.figures:
            lines += [f"![{f.caption}]({_rel(f.png, out)})", ""]
            if f.link:
                lines += [f"MIDI: [{f.link.name}]({_rel(f.link, out)})", ""]
            if f.audio:
                lines += [f"Audio: [{f.audio.name}]({_rel(f.audio, out)})", ""]
    return "\n".join(lines)


def render_html(sections: list[Section], out: Path) -> str:
    body = ["<h1>Cadenza report</h1>"]
    for s in sections:
        body.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            body.append(f"<p>{html.escape(s.text)}</p>")
        if s.table is not None:
            body.append(s.table.to_html(border=0, float_format="{:.3f}".format, na_rep="-"))
        for f in s.figures:
            link = (f' <a href="{html.escape(_rel(f.link, out))}">{html.escape(f.link.name)}'
                    "</a>" if f.link else "")
            if f.audio:
                link += (f'<br><audio controls preload="none" '
                         f'src="{html.escape(_rel(f.audio, out))}"></audio>')
            body.append(f'<figure><img src="{html.escape(_rel(f.png, out))}" '
                        f'alt="{html.escape(f.caption)}"><figcaption>'
                        f"{html.escape(f.caption)}{link}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;"
             "text-align:right}tr:nth-child(even){background:#f3f3f3}img{max-width:100%}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Cadenza report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _save(fig, out: Path) -> Path:
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return out


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _rel(path: Path, doc: Path) -> str:
    return os.path.relpath(path, doc.parent)
