import hashlib
import json

import pandas as pd
import pytest

from cadenza.config import PrepareParams
from cadenza.prepare.parse import RejectedPiece, keep_track, parse_midi
from cadenza.prepare.shards import read_pieces, read_table
from cadenza.prepare.split import split_of
from cadenza.prepare.stage import prepare
from cadenza.sources.fetch import write_manifest
from cadenza.testing.corpora import TOY_SOURCE, write_score


def test_prepare_writes_shards_and_quarantines_bad_files(raw_corpus, tmp_path):
    out = tmp_path / "prepared"
    counts = prepare(raw_corpus, ["toy"], out, PrepareParams(valid_fraction=0.2, test_fraction=0.2))
    rejects = pd.read_parquet(out / "rejects.parquet").set_index("piece_id")
    assert set(rejects.index) == {"toy/corrupt", "toy/empty", "toy/truncated", "bwv277"}
    assert "unreadable MIDI" in rejects.loc["toy/truncated", "reason"]
    assert rejects.loc["bwv277", "stage"] == "fetch"
    pieces = read_pieces(out)
    assert len(pieces) == 30 and counts["rejected"] == 4
    assert sum(counts[s]["pieces"] for s in ("train", "valid", "test")) == 30
    notes = read_table(out, "notes")
    assert len(notes) == 30 * 4 * 32
    assert set(notes.columns) >= {
        "piece_id",
        "split",
        "source",
        "track",
        "pitch",
        "velocity",
        "onset_beats",
        "duration_beats",
        "onset_s",
        "duration_s",
        "step_beats",
        "step_s",
    }
    # 120 bpm: one beat is half a second
    assert (notes.onset_s * 2 - notes.onset_beats).abs().max() < 1e-9
    # step is the onset delta within a piece
    first = notes[notes.piece_id == "toy/p00"].sort_values(["onset_beats", "pitch"])
    assert first.step_beats.iloc[0] == 0 and set(first.step_beats.iloc[1:]) <= {0.0, 1.0}
    # no piece straddles two splits
    assert notes.groupby("piece_id").split.nunique().max() == 1
    rolls = read_table(out, "rolls", "test")
    assert set(rolls.piece_id) == set(pieces[pieces.split == "test"].piece_id)
    meta = json.loads((out / "_meta.json").read_text())
    assert meta["schema_version"] == 2 and meta["encoder"]["steps_per_beat"] == 4
    assert "symusic" in meta["libraries"]
    assert list(out.parent.glob(".prepared.*")) == []  # no temporary folder left behind


def test_split_is_deterministic_and_independent_of_other_pieces():
    ids = [f"src/piece{i}" for i in range(2000)]
    splits = [split_of(i, 0.1, 0.1) for i in ids]
    assert splits == [split_of(i, 0.1, 0.1) for i in reversed(ids)][::-1]
    share = pd.Series(splits).value_counts(normalize=True)
    assert share["test"] == pytest.approx(0.1, abs=0.03)
    assert share["valid"] == pytest.approx(0.1, abs=0.03)


def test_transposition_to_c(tmp_path):
    # a D major scale with a D major key signature (2 sharps) lands on C major
    raw = tmp_path / "raw" / "toy"
    write_score(
        raw / "midi" / "d.mid",
        [[(i, 1, 62 + s) for i, s in enumerate([0, 2, 4, 5, 7, 9, 11, 12])]],
        key_sig=(2, 0),
    )
    write_manifest(
        raw, [{"piece_id": "d", "format": "midi", "path": "midi/d.mid", "status": "ok"}], TOY_SOURCE
    )
    prepare(tmp_path / "raw", ["toy"], tmp_path / "out", PrepareParams())
    piece = read_pieces(tmp_path / "out").iloc[0]
    assert (piece.key_original, piece.key_method, piece.key_shift) == (
        "D major",
        "key_signature",
        -2,
    )
    pitches = sorted(read_table(tmp_path / "out", "notes").pitch)
    assert pitches == [60, 62, 64, 65, 67, 69, 71, 72]


def test_notes_the_key_shift_moves_off_the_midi_range_are_counted_or_the_piece_rejected(
    tmp_path,
):
    # G major (1 sharp) shifts by +5: of 115..127 in G major, the 5 notes up to 122 land at or
    # below 127; a piece of only 123..127 loses every note and is rejected, not a crash
    raw = tmp_path / "raw" / "toy"
    high = [[(i, 1, p) for i, p in enumerate([115, 117, 119, 120, 122, 123, 124, 126, 127])]]
    only_top = [[(i, 1, p) for i, p in enumerate([123, 124, 126, 127] * 3)]]
    rows = []
    for name, notes in (("high", high), ("top", only_top)):
        write_score(raw / "midi" / f"{name}.mid", notes, key_sig=(1, 0))
        rows.append(
            {"piece_id": name, "format": "midi", "path": f"midi/{name}.mid", "status": "ok"}
        )
    write_manifest(raw, rows, TOY_SOURCE)
    prepare(tmp_path / "raw", ["toy"], tmp_path / "out", PrepareParams(min_notes=3))
    (piece,) = read_pieces(tmp_path / "out").itertuples()
    assert (piece.piece_id, piece.key_shift, piece.n_notes) == ("toy/high", 5, 5)
    assert "4 notes moved out of MIDI range by the key shift +5: dropped" in piece.repairs
    assert sorted(read_table(tmp_path / "out", "notes").pitch) == [120, 122, 124, 125, 127]
    (reject,) = pd.read_parquet(tmp_path / "out" / "rejects.parquet").itertuples()
    assert reject.piece_id == "toy/top"
    assert "too few notes: 0 < min_notes=3 after dropping 12" in reject.reason


def test_a_byte_identical_copy_is_left_out_so_no_piece_is_in_two_splits(tmp_path):
    # one piece under 7 names (the probe's folder: 4 went to train, 1 to valid, 2 to test)
    raw = tmp_path / "raw" / "toy"
    scale = [[(i, 1, 60 + s) for i, s in enumerate([0, 2, 4, 5, 7, 9, 11, 12])]]
    write_score(raw / "midi" / "other.mid", [[(i, 1, 62) for i in range(8)]])
    rows = [{"piece_id": "other", "path": "midi/other.mid"}]
    for i in range(7):
        write_score(raw / "midi" / f"copy{i}.mid", scale)
        rows.append({"piece_id": f"copy{i}", "path": f"midi/copy{i}.mid"})
    for row in rows:
        data = (raw / row["path"]).read_bytes()
        row.update(format="midi", status="ok", sha256=hashlib.sha256(data).hexdigest())
    write_manifest(raw, rows, TOY_SOURCE)
    counts = prepare(tmp_path / "raw", ["toy"], tmp_path / "out", PrepareParams())
    assert sorted(read_pieces(tmp_path / "out").piece_id) == ["toy/copy0", "toy/other"]
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    assert rejects.piece_id.tolist() == [f"copy{i}" for i in range(1, 7)]
    assert rejects.reason.str.startswith("duplicate of toy/copy0 (the same file, sha256 ").all()
    assert counts["filtered_out"] == 6 and counts["rejected"] == 0


def test_piano_filter_keeps_programs_0_to_7_without_drums():
    assert keep_track(0, False, "piano") and keep_track(7, False, "piano")
    assert not keep_track(8, False, "piano") and not keep_track(0, True, "piano")
    assert keep_track(40, False, "all") and not keep_track(40, True, "all")


def test_parse_rejects_non_midi(tmp_path):
    path = tmp_path / "x.mid"
    path.write_bytes(b"<html>not a midi file</html>")
    with pytest.raises(RejectedPiece, match="unreadable MIDI"):
        parse_midi(path, "all")


def test_prepare_cli_says_what_failed_in_one_line(tmp_path):
    # no fetched corpus under --raw: one line naming the missing file, exit 1, no traceback
    from typer.testing import CliRunner

    from cadenza.cli import app
    from cadenza.testing.checkout import ROOT

    out = tmp_path / "prepared"
    argv = [
        "prepare",
        "--raw",
        str(tmp_path),
        "--out",
        str(out),
        "--params",
        str(ROOT / "params.yaml"),
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: FileNotFoundError: ") and "source.json" in line
    assert not out.exists()


def test_an_empty_split_is_said_at_prepare(tmp_path, caplog):
    # one piece: it lands in one split, and the other two are empty
    raw = tmp_path / "raw" / "toy"
    write_score(raw / "midi" / "one.mid", [[(i, 1, 60 + i) for i in range(8)]])
    row = {"piece_id": "one", "format": "midi", "path": "midi/one.mid", "status": "ok"}
    write_manifest(raw, [row], TOY_SOURCE)
    with caplog.at_level("WARNING", logger="cadenza.prepare.stage"):
        counts = prepare(tmp_path / "raw", ["toy"], tmp_path / "out", PrepareParams())
    empty = [split for split in ("train", "valid", "test") if not counts[split]["pieces"]]
    assert len(empty) == 2
    for split in empty:
        assert f"the {split} split is empty (1 pieces in all)" in caplog.text
