"""Sections about what the models made and how it sounds: a piano roll per sample and real
excerpt (linked to its MIDI and audio clip), the audio note, the t-SNE embedding maps and the
listening test."""

from __future__ import annotations

from pathlib import Path

from cadenza.audio import INSTALL_HINT, read_status
from cadenza.io import read_json
from cadenza.listening import power_analysis, power_text, results_table
from cadenza.report.charts import plot_roll
from cadenza.report.document import Figure, Section


def sample_figures(midi_dir: Path, name: str, audio: Path | None, plots: Path) -> list[Figure]:
    """A piano roll per MIDI file, linked to the MIDI and, where rendered, its audio clip."""
    clips = (
        {
            v["midi"]: audio / name / clip
            for clip, v in read_status(audio / name).get("clips", {}).items()
        }
        if audio is not None
        else {}
    )
    return [
        Figure(png, f"{name}: {midi.name}", midi, clips.get(midi.name))
        for midi in sorted(midi_dir.glob("*.mid"))
        if (png := plot_roll(midi, plots / f"{name}_{midi.stem}.png", f"{name}: {midi.name}"))
    ]


def audio_note(audio: Path, names: list[str]) -> str:
    """One line: how the clips were made, or why there are none (then the MIDI is linked)."""
    statuses = [read_status(audio / n) for n in names]
    missing = [s["unavailable"] for s in statuses if s.get("unavailable")]
    if missing:
        return (
            f"No audio: {missing[0]}. The MIDI files are linked under each piece instead "
            f"(`{INSTALL_HINT}`, then `.venv/bin/dvc repro -f render report`, renders them)."
        )
    done = next((s for s in statuses if s.get("soundfont")), {})
    n = sum(len(s.get("clips", {})) for s in statuses)
    return (
        f"{n} clips: every sample and real excerpt cut (or padded) to "
        f"{done.get('clip_seconds', 0):g} s, rendered with FluidSynth and "
        f"{Path(done.get('soundfont', '?')).name} at {done.get('sample_rate', 0)} Hz; a "
        "player is under each piano roll."
    )


def embeddings_section(folder: Path) -> Section:
    """Paper 003's figs. 6 and 8: t-SNE maps of the learned embeddings."""
    maps = read_json(folder / "maps.json") if (folder / "maps.json").exists() else {}
    figures = [
        Figure(folder / png, f"{model}: t-SNE of the learned embeddings")
        for model, png in maps.items()
        if png.endswith(".png")
    ]
    without = [m for m, png in maps.items() if not png.endswith(".png")]
    text = (
        "Circles are note-on tokens (for grid schemes: pitch or chord tokens), crosses "
        "note-off tokens, coloured by pitch from blue (low) to red (high); grey dots are "
        "rests, time shifts, velocities and special tokens, as in paper 003's figures 6 and "
        "8." + (f" No map (no per-symbol embedding): {', '.join(without)}." if without else "")
    )
    return Section("Embedding maps (t-SNE)", text, figures=figures)


def listening_section(result_path: Path | None) -> Section:
    """The blind listening test's table when one was analysed; the power analysis always."""
    how = (
        "Run one with `.venv/bin/cadenza listening-test make --n 12`, hand out the folder, "
        "then `.venv/bin/cadenza listening-test analyze answers/*.json` and "
        "`.venv/bin/dvc repro report` (docs/listening.md)."
    )
    result = read_json(result_path) if result_path is not None and result_path.exists() else {}
    if not result.get("n_answers"):  # absent, or the committed placeholder (a DVC dep)
        return Section(
            "Listening test",
            f"No listening test analysed yet. {how} {power_text(power_analysis())}",
        )
    text = (
        f"{result['n_listeners']} listener(s), {result['n_answers']} rating(s) on paper "
        "003's scale (1 = completely random noise, 5 = musically plausible, 10 = composed "
        "by a novice composer); `yes_*` is the share of yes on paper 004's questions; "
        f"`diff_vs_real` is the mean rating minus that of the real excerpts "
        f"(`{result['real']}`), with two-sided Welch t-test and Mann-Whitney p-values. "
        f"{power_text(result['power'])}"
    )
    return Section("Listening test", text, results_table(result))
