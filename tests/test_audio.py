"""Audio renders with the real FluidSynth and soundfont (CI installs both), and the report's
one-line fallback when there is no synthesizer. The fallback tests run twice: with this
machine's PATH (FluidSynth or not) and with a PATH that lacks it, as on a fresh machine."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadenza.audio import MAX_RELEASE_S, audio_seconds, find_synth, render_folders
from cadenza.config import ListenParams
from cadenza.io import write_json
from cadenza.listening import REAL
from cadenza.report import build_report
from cadenza.testing.corpora import write_score

SYNTH = find_synth(ListenParams())
needs_synth = pytest.mark.skipif(isinstance(SYNTH, str), reason=f"{SYNTH}")
NO_SYNTH = "no synthesizer: `fluidsynth` is not installed"


@pytest.fixture(params=["this PATH", "no fluidsynth on PATH"])
def synth_on_path(request, monkeypatch, tmp_path) -> bool:
    """Whether `fluidsynth` is on PATH: this machine's PATH, then one without it (an empty
    folder), as on a user's machine without the optional Debian packages."""
    if request.param != "this PATH":
        (tmp_path / "empty-bin").mkdir()
        monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return shutil.which("fluidsynth") is not None


def _piece(path: Path, beats: int) -> Path:
    """A C-major scale in quarter notes at 120 bpm: `beats` / 2 seconds long."""
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    return write_score(path, [[(float(b), 1.0, scale[b % 8]) for b in range(beats)]])


@needs_synth
@pytest.mark.parametrize("fmt", ["ogg", "wav"])
def test_render_gives_audio_of_the_expected_length(tmp_path, fmt):
    midi = tmp_path / "midi"
    _piece(midi / "short.mid", 4)  # 2 s: shorter than the clip, padded with silence
    _piece(midi / "long.mid", 40)  # 20 s: cut to the 5 s clip
    params = ListenParams(format=fmt, clip_seconds=5.0, sample_rate=16000)
    statuses = render_folders({"m": midi}, tmp_path / "audio", params)
    suffix = ".ogg" if fmt == "ogg" else ".wav"
    clips = statuses["m"]["clips"]
    assert set(clips) == {f"short{suffix}", f"long{suffix}"}
    assert statuses["m"]["unavailable"] is None
    lengths = []
    for name in (f"short{suffix}", f"long{suffix}"):  # both cut or padded to the 5 s clip
        seconds = audio_seconds(tmp_path / "audio" / "m" / name)
        assert 5.0 <= seconds <= 5.0 + MAX_RELEASE_S, (name, seconds)
        assert clips[name]["seconds"] == pytest.approx(seconds, abs=1e-3)
        lengths.append(seconds)
    assert abs(lengths[0] - lengths[1]) < 1.0  # no length cue between short and long pieces
    head = (tmp_path / "audio" / "m" / f"long{suffix}").read_bytes()[:64]
    if fmt == "ogg":
        assert head.startswith(b"OggS") and b"vorbis" in head
    else:
        assert head.startswith(b"RIFF")
    if fmt == "wav":  # the notes are audible, not silence
        with wave.open(str(tmp_path / "audio" / "m" / "long.wav")) as w:
            assert w.getframerate() == 16000
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert np.abs(samples.astype(float)).mean() > 100


@needs_synth
@pytest.mark.parametrize("fmt", ["ogg", "wav"])
def test_a_clip_renders_to_the_same_bytes_every_time(tmp_path, fmt):
    """libsndfile gives each Ogg file a random stream serial: without `fix_ogg_serial`, DVC
    saw `data/audio` change on every rerun of `render`."""
    _piece(tmp_path / "midi" / "a.mid", 8)
    params = ListenParams(format=fmt, clip_seconds=3.0, sample_rate=16000)
    runs = [
        render_folders({"m": tmp_path / "midi"}, tmp_path / f"audio{i}", params) for i in (0, 1)
    ]
    name = "a.ogg" if fmt == "ogg" else "a.wav"
    first, second = ((tmp_path / f"audio{i}" / "m" / name).read_bytes() for i in (0, 1))
    assert first == second and runs[0]["m"]["clips"] == runs[1]["m"]["clips"]
    if fmt == "ogg":  # the rewritten pages still decode to the whole clip
        assert 3.0 <= audio_seconds(tmp_path / "audio0" / "m" / name) <= 3.0 + MAX_RELEASE_S


@needs_synth
def test_an_unreadable_midi_costs_one_clip_only(tmp_path):
    midi = tmp_path / "midi"
    _piece(midi / "good.mid", 4)
    (midi / "bad.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    statuses = render_folders({"m": midi}, tmp_path / "audio", ListenParams(clip_seconds=3))
    assert set(statuses["m"]["clips"]) == {"good.ogg"}


def test_no_soundfont_renders_nothing_and_says_why(tmp_path, synth_on_path):
    """The configured soundfont is named as missing whether or not FluidSynth is installed,
    and a missing FluidSynth is named too: one reading tells the user everything to fix."""
    _piece(tmp_path / "midi" / "a.mid", 4)
    missing = tmp_path / "no" / "such.sf2"
    statuses = render_folders(
        {"m": tmp_path / "midi"}, tmp_path / "audio", ListenParams(soundfont=str(missing))
    )
    assert statuses["m"]["clips"] == {}
    reason = statuses["m"]["unavailable"]
    assert f"no soundfont: {missing} does not exist" in reason
    assert (NO_SYNTH in reason) is not synth_on_path, reason
    assert sorted(p.name for p in (tmp_path / "audio" / "m").iterdir()) == ["render.json"]


def _rendered_report(tmp_path: Path, params: ListenParams) -> Path:
    """A one-model report over a rendered sample and excerpt; returns its folder."""
    metrics, generated, excerpts = tmp_path / "metrics", tmp_path / "gen", tmp_path / "ex"
    write_json(metrics / "m.json", {"tonal_distance": 1.0, "polyphony": 2.0, "n_pieces": 2})
    _piece(generated / "m" / "sample_000.mid", 8)
    _piece(excerpts / "excerpt_000.mid", 8)
    render_folders({"m": generated / "m", REAL: excerpts}, tmp_path / "audio", params)
    (tmp_path / "train").mkdir()
    out = tmp_path / "reports"
    build_report(
        metrics,
        tmp_path / "train",
        generated,
        out / "report.md",
        out / "index.html",
        out / "metrics.csv",
        out / "plots",
        audio=tmp_path / "audio",
        excerpts=excerpts,
    )
    return out


def test_report_degrades_to_one_line_and_midi_links_without_a_synth(tmp_path, synth_on_path):
    missing = tmp_path / "no" / "such.sf2"
    out = _rendered_report(tmp_path, ListenParams(soundfont=str(missing)))
    md = (out / "report.md").read_text()
    notes = [line for line in md.splitlines() if line.startswith("No audio:")]
    assert len(notes) == 1 and str(missing) in notes[0]
    assert (NO_SYNTH in notes[0]) is not synth_on_path, notes[0]
    assert "MIDI: [sample_000.mid](../gen/m/sample_000.mid)" in md
    assert "MIDI: [excerpt_000.mid](../ex/excerpt_000.mid)" in md
    assert "Audio:" not in md
    page = (out / "index.html").read_text()
    assert "<audio" not in page and 'href="../gen/m/sample_000.mid"' in page
    assert pd.read_csv(out / "metrics.csv").shape[0] == 1


@needs_synth
def test_report_has_a_player_per_rendered_clip(tmp_path):
    out = _rendered_report(tmp_path, ListenParams(clip_seconds=3))
    page = (out / "index.html").read_text()
    assert page.count("<audio") == 2
    assert 'src="../audio/m/sample_000.ogg"' in page
    assert f'src="../audio/{REAL}/excerpt_000.ogg"' in page
    md = (out / "report.md").read_text()
    assert "Audio: [sample_000.ogg](../audio/m/sample_000.ogg)" in md
    assert (
        "No audio:" not in md
        and "2 clips: every sample and real excerpt cut (or padded) to 3 s" in md
    )


def test_audio_seconds_refuses_other_files(tmp_path):
    (tmp_path / "x.ogg").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="neither WAV nor Ogg"):
        audio_seconds(tmp_path / "x.ogg")
