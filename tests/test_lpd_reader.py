"""The LPD reader (`read_lpd`, straight from the .npz's sparse arrays) against the path it
replaced: `pypianoroll.load`, dense rolls, `roll_to_notes`. Same notes, same order, same
dtypes, same rejections; on a hand-built file with known notes, and on all 342 files of the
shared LPD sample when ../shared is there."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pypianoroll
import pytest

from cadenza.prepare.parse import NOTE_ARRAYS, RejectedPiece
from cadenza.prepare.readers import read_lpd, read_lpd_dense
from cadenza.testing.checkout import SHARED

LPD_SAMPLE = SHARED / "datasets" / "lpd_cleansed_sample"
DTYPES = {
    "track": np.int16,
    "pitch": np.int16,
    "velocity": np.int16,
    "onset_beats": np.float64,
    "duration_beats": np.float64,
    "onset_s": np.float64,
    "duration_s": np.float64,
}


def outcome(read, path: Path, piano: str) -> dict[str, np.ndarray] | tuple[str, str]:
    """The note arrays, or the rejection's (stage, reason)."""
    try:
        return read(path, piano).notes
    except RejectedPiece as err:
        return err.stage, str(err)


def assert_same(got: dict | tuple, expected: dict | tuple, where: str) -> None:
    if isinstance(expected, tuple) or isinstance(got, tuple):
        assert isinstance(got, tuple) and isinstance(expected, tuple), where
        if expected[0] == "filter":  # a broken file may be worded differently; not a filter
            assert got == expected, where
        return
    for name in NOTE_ARRAYS:
        assert got[name].dtype == expected[name].dtype, (where, name)
        np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{where} {name}")


# ---------------------------------------------------------------- a hand-built file


def _roll(notes: list[tuple[int, int, int, int]], n_steps: int = 96) -> np.ndarray:
    """(pitch, start, end, velocity) -> a uint8 roll."""
    roll = np.zeros((n_steps, 128), np.uint8)
    for pitch, start, end, velocity in notes:
        roll[start:end, pitch] = velocity
    return roll


PIANO = [
    (60, 0, 24, 90),
    (67, 0, 24, 70),
    (67, 24, 48, 100),  # 67: one note, velocity 70
    (64, 24, 48, 80),
    (72, 48, 60, 50),
    (72, 61, 72, 60),  # 72: a silent step splits
    (48, 84, 96, 40),
]  # up to the roll's end


def write_toy(path: Path, with_piano: bool = True) -> Path:
    """Piano, drums, bass, an empty piano track and a non-piano track named "Piano"."""
    tracks = [
        pypianoroll.StandardTrack(name="Piano", program=0, is_drum=False, pianoroll=_roll(PIANO)),
        pypianoroll.StandardTrack(
            name="Piano", program=0, is_drum=True, pianoroll=_roll([(36, 0, 6, 100)])
        ),
        pypianoroll.StandardTrack(
            name="Bass", program=33, is_drum=False, pianoroll=_roll([(40, 0, 48, 90)])
        ),
        pypianoroll.StandardTrack(name="Piano", program=1, is_drum=False, pianoroll=_roll([])),
        pypianoroll.StandardTrack(
            name="Piano", program=40, is_drum=False, pianoroll=_roll([(76, 0, 6, 100)])
        ),
    ]
    if not with_piano:
        tracks = tracks[1:3]
    multitrack = pypianoroll.Multitrack(resolution=24, tempo=np.full(96, 120.0), tracks=tracks)
    pypianoroll.save(path, multitrack)
    return path


def test_hand_built_file_gives_the_known_notes(tmp_path):
    notes = read_lpd(write_toy(tmp_path / "toy.npz"), "program").notes
    # (onset step, pitch, steps, velocity), sorted by onset then pitch; only track 0 is piano
    expected = np.array(
        [
            (0, 60, 24, 90),
            (0, 67, 48, 70),
            (24, 64, 24, 80),
            (48, 72, 12, 50),
            (61, 72, 11, 60),
            (84, 48, 12, 40),
        ]
    )
    start, pitch, steps, velocity = expected.T
    np.testing.assert_array_equal(notes["track"], np.zeros(6))
    np.testing.assert_array_equal(notes["pitch"], pitch)
    np.testing.assert_array_equal(notes["velocity"], velocity)
    np.testing.assert_array_equal(notes["onset_beats"], start / 24)
    np.testing.assert_array_equal(notes["duration_beats"], steps / 24)
    np.testing.assert_allclose(notes["onset_s"], start * 0.5 / 24)  # 120 bpm
    np.testing.assert_allclose(notes["duration_s"], steps * 0.5 / 24)
    assert {k: v.dtype for k, v in notes.items()} == {k: np.dtype(v) for k, v in DTYPES.items()}


def test_hand_built_file_by_track_name(tmp_path):
    """LPD-5 keeps tracks named "Piano" (any program), still not drums nor empty ones;
    the kept tracks' notes follow one another, track by track."""
    notes = read_lpd(write_toy(tmp_path / "toy.npz"), "name").notes
    assert notes["track"].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert notes["pitch"].tolist() == [60, 67, 64, 72, 72, 48, 76]


@pytest.mark.parametrize("piano", ["program", "name"])
def test_hand_built_file_matches_the_pypianoroll_baseline(tmp_path, piano):
    path = write_toy(tmp_path / "toy.npz")
    assert_same(outcome(read_lpd, path, piano), outcome(read_lpd_dense, path, piano), piano)


def test_no_piano_track_is_filtered_out_not_an_error(tmp_path):
    path = write_toy(tmp_path / "toy.npz", with_piano=False)
    with pytest.raises(RejectedPiece, match="^no piano track$") as err:
        read_lpd(path, "program")
    assert err.value.stage == "filter"


def test_unsorted_and_duplicate_csc_entries_read_as_the_dense_roll_would(tmp_path):
    """scipy's canonical form is what files hold, but a valid CSC matrix may list a
    column's entries in any order, and repeat one (the dense roll holds their sum)."""
    path = write_toy(tmp_path / "toy.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "info.json"}
        info = npz["info.json"]
    data, indices = arrays["pianoroll_0_csc_data"], arrays["pianoroll_0_csc_indices"]
    indptr = arrays["pianoroll_0_csc_indptr"]
    rng = np.random.default_rng(0)
    for lo, hi in zip(indptr[:-1], indptr[1:], strict=True):
        order = lo + rng.permutation(hi - lo)
        data[lo:hi], indices[lo:hi] = data[order], indices[order]
    first = indptr[60]  # split pitch 60's first cell (velocity 90) into 40 + 50
    data = np.insert(data, first, 40)
    data[first + 1] -= 40
    arrays["pianoroll_0_csc_data"] = data
    arrays["pianoroll_0_csc_indices"] = np.insert(indices, first, indices[first])
    arrays["pianoroll_0_csc_indptr"] = indptr + (np.arange(len(indptr)) > 60)
    odd = tmp_path / "odd.npz"
    np.savez_compressed(odd, **arrays)
    with zipfile.ZipFile(odd, "a") as zf:
        zf.writestr("info.json", info)
    assert_same(
        outcome(read_lpd, odd, "program"), outcome(read_lpd_dense, odd, "program"), "unsorted"
    )


@pytest.mark.parametrize("damage", ["indices out of range", "short indptr", "not a zip"])
def test_broken_arrays_are_rejected_not_raised(tmp_path, damage):
    path = write_toy(tmp_path / "toy.npz")
    if damage == "not a zip":
        np.save(buf := io.BytesIO(), np.zeros(3))
        path.write_bytes(buf.getvalue())
    else:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files if k != "info.json"}
            info = npz["info.json"]
        key = (
            "pianoroll_0_csc_indices" if damage.startswith("indices") else "pianoroll_0_csc_indptr"
        )
        arrays[key] = arrays[key] + 10_000 if key.endswith("indices") else arrays[key][:-1]
        np.savez_compressed(path, **arrays)
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("info.json", info)
    with pytest.raises(RejectedPiece, match="unreadable npz") as err:
        read_lpd(path, "program")
    assert err.value.stage == "prepare"


# ---------------------------------------------------------------- the real LPD sample


def _sample() -> list[Path]:
    files = sorted(LPD_SAMPLE.rglob("*.npz"))
    if not files:
        pytest.skip(
            f"no LPD sample at {LPD_SAMPLE} (../shared/datasets is absent on this "
            "machine); the hand-built file above still covers the reader"
        )
    return files


@pytest.mark.parametrize("piano", ["program", "name"])
def test_every_sample_file_reads_as_the_pypianoroll_baseline(piano):
    files = _sample()
    kept = 0
    for path in files:
        expected = outcome(read_lpd_dense, path, piano)
        assert_same(outcome(read_lpd, path, piano), expected, str(path))
        kept += not isinstance(expected, tuple)
    assert kept > 0
    if piano == "program":
        # docs/figures.md's sample: 241 files with piano (prepare keeps 239, rejects 2)
        assert len(files) == 342 and kept == 241


def test_prepare_reports_kept_rejected_and_filtered_counts_per_source(tmp_path, caplog):
    """The stage's closing line per source: what a 21k-file LPD run tells its log."""
    import logging

    from cadenza.config import PrepareParams
    from cadenza.prepare.stage import prepare
    from cadenza.sources.fetch import write_manifest
    from cadenza.sources.registry import SOURCES

    folder = tmp_path / "raw" / "lpd_cleansed"
    folder.mkdir(parents=True)
    rows = []
    for name, with_piano in [("a", True), ("b", True), ("none", False)]:
        write_toy(folder / f"{name}.npz", with_piano)
        rows.append({"piece_id": name, "format": "npz", "path": f"{name}.npz", "status": "ok"})
    (folder / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    rows.append({"piece_id": "bad", "format": "npz", "path": "bad.npz", "status": "ok"})
    write_manifest(folder, rows, SOURCES["lpd_cleansed"])
    with caplog.at_level(logging.INFO, logger="cadenza.prepare.stage"):
        counts = prepare(
            tmp_path / "raw", ["lpd_cleansed"], tmp_path / "out", PrepareParams(min_notes=4)
        )
    assert (counts["rejected"], counts["filtered_out"]) == (1, 1)
    assert any(
        r.getMessage().startswith(
            "prepare lpd_cleansed: 2 kept, 1 rejected, 1 filtered out (no piano track) in "
        )
        for r in caplog.records
    )
