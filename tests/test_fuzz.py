"""Fuzzing the path from a raw file to Parquet rows (issue #8).

Every input must end as a sane parse (a row) or a rejects-table row with a reason: never a
crash, a hang or an unbounded allocation. Structured mutants (lying chunk lengths, huge
deltas, running-status abuse, tpq 0, tempo 0, ...) run in a child process under a memory
limit and a deadline (`cadenza.testing.fuzz_worker`), so a segfault or a hang fails the test instead
of killing it; hypothesis adds bit flips, truncations and arbitrary track bodies in-process.
The long run is `bench/robustness.py`.
"""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pypianoroll  # at import time, not inside the first timed hypothesis example
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadenza.config import PrepareParams
from cadenza.prepare.parse import RejectedPiece, check_midi_bytes, parse_midi
from cadenza.prepare.stage import prepare
from cadenza.sources.fetch import write_manifest
from cadenza.testing import mutate
from cadenza.testing.checkout import SHARED
from cadenza.testing.corpora import TOY_SOURCE, chorale_like, write_score
from cadenza.testing.fuzz_worker import process_one, run_isolated

FUZZ_DATA = Path(__file__).parent / "data" / "fuzz"
# deadline: generous, since the CI machine is 2 shared cores; hangs are the subprocess
# harness's job (a per-file deadline that kills), not hypothesis's
FAST = settings(
    max_examples=120,
    deadline=10_000,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _synthetic_seed() -> bytes:
    """A real (symusic-written) 4-voice file, for machines without ../shared/datasets."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = write_score(
            Path(tmp) / "s.mid", chorale_like(np.random.default_rng(3)), key_sig=(0, 0)
        )
        return path.read_bytes()


SEEDS: list[bytes] = (
    [p.read_bytes() for p in mutate.seed_files(SHARED / "datasets", 2)]
    if (SHARED / "datasets").exists()
    else []
)
SEEDS.append(_synthetic_seed())


def _write_all(folder: Path, cases: list[tuple[str, bytes]]) -> list[tuple[str, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (name, data) in enumerate(cases):
        path = folder / f"{i:04d}.mid"
        path.write_bytes(data)
        out.append((name, path))
    return out


@pytest.fixture(scope="module")
def structured_outcomes(tmp_path_factory) -> dict[str, tuple[str, str]]:
    cases = mutate.mutants(SEEDS, random.Random(0), n_random=150)
    files = _write_all(tmp_path_factory.mktemp("fuzz"), cases)
    return {o.name: (o.status, o.detail) for o in run_isolated(files, timeout_s=30)}


def test_no_structured_mutant_crashes_hangs_or_overallocates(structured_outcomes):
    crashes = {k: v for k, v in structured_outcomes.items() if v[0] == "crash"}
    assert not crashes
    assert all(detail for _, detail in structured_outcomes.values())  # a reason, always
    assert len(structured_outcomes) >= len(mutate.STRUCTURED) * len(SEEDS) + 150


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("chunk_length_huge", "rejected", "claims 2,147,483,647 bytes"),
        ("chunk_length_max", "rejected", "claims 4,294,967,295 bytes"),
        ("header_length_huge", "rejected", "MThd length"),
        ("ticks_per_quarter_zero", "rejected", "invalid ticks per quarter: 0"),
        ("smpte_division", "rejected", "SMPTE"),
        ("tempo_zero", "rejected", "invalid tempo: 0 microseconds"),
        ("huge_delta", "rejected", "beats (limit"),
        ("huge_deltas_repeated", "rejected", "overflowed"),
        ("meta_length_huge", "rejected", "unreadable MIDI"),
        ("sysex_length_huge", "rejected", "unreadable MIDI"),
        ("overlong_vlq", "rejected", "unreadable MIDI"),
        ("running_status_at_start", "rejected", "running status"),
        ("format_unknown", "rejected", "format 30583"),
        ("format_2", "rejected", "format 2 (independent sequences) is not supported"),
        ("orphan_note_off", "ok", "notes"),
        ("overlapping_same_pitch", "ok", "notes"),
        ("extra_unknown_chunks", "ok", "notes"),
        ("no_end_of_track", "ok", "notes"),
    ],
)
def test_structured_mutant_outcomes(structured_outcomes, case, status, reason):
    """Each lie ends the way it should, with a reason that says what is wrong."""
    for s in range(len(SEEDS)):
        got_status, detail = structured_outcomes[f"{case}/seed{s}"]
        assert got_status == status, detail
        assert reason in detail


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("many_notes_120k", "ok", "120000 notes"),
        ("text_named_mid", "rejected", "not a MIDI file: starts with b'<html><b'"),
        ("empty", "rejected", "not a MIDI file: starts with b''"),
        ("magic_only", "rejected", "truncated MIDI header"),
        ("all_velocity_zero", "rejected", "no notes in the kept tracks"),
    ],
)
def test_whole_file_cases(structured_outcomes, case, status, reason):
    assert structured_outcomes[case][0] == status
    assert reason in structured_outcomes[case][1]


# ---------------------------------------------------------------- regressions (found by fuzzing)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        # symusic wraps tick times past 2^31: the piece was accepted with negative onsets
        ("time_overflow.mid", "negative note onset: times overflowed"),
        # tempo 0 made every time in seconds 0: accepted, with all durations 0 s
        ("tempo_zero.mid", "invalid tempo: 0 microseconds per quarter"),
        # one delta of 2^28 ticks: accepted as a 559,000-beat piece (a 4.5 M-step roll)
        ("huge_delta.mid", "beats (limit 100,000)"),
        # tpq 0 in the header: symusic accepted it with ticks_per_quarter 0
        ("tpq_zero.mid", "invalid ticks per quarter: 0"),
    ],
)
def test_fuzz_regressions_are_rejected_with_a_reason(name, reason):
    """Inputs the fuzzer found accepted with unusable times (tests/data/fuzz/README.md)."""
    with pytest.raises(RejectedPiece, match=re.escape(reason)):
        parse_midi(FUZZ_DATA / name, "all")


def test_fuzz_regression_seeds_are_what_they_claim():
    """The stored seeds still parse in bare symusic, so the tests above test our checks."""
    import symusic

    score = symusic.Score.from_midi((FUZZ_DATA / "time_overflow.mid").read_bytes())
    onsets = np.concatenate([t.notes.numpy()["time"] for t in score.tracks])
    assert onsets.min() < 0
    score = symusic.Score.from_midi((FUZZ_DATA / "huge_delta.mid").read_bytes())
    assert score.end() > 100_000 * score.ticks_per_quarter


def test_huge_claimed_length_allocates_nothing(tmp_path):
    """A 3 KB file that claims a 2 GiB track is refused by the framing check, under a
    1 GiB address-space limit (a parser that trusted it would need 2 GiB)."""
    path = tmp_path / "huge.mid"
    path.write_bytes(mutate.chunk_length_huge(SEEDS[-1]))
    [outcome] = run_isolated([("huge", path)], timeout_s=30, mem_limit=1 << 30)
    assert outcome.status == "rejected" and "claims 2,147,483,647 bytes" in outcome.detail


# ---------------------------------------------------------------- hypothesis, in-process


def _outcome(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "case.mid"
    path.write_bytes(data)
    status, detail = process_one(str(path))  # raises on anything but a row or a reject
    assert detail
    return status


@FAST
@given(
    seed=st.integers(0, len(SEEDS) - 1),
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), min_size=1, max_size=16),
)
def test_bit_flips_end_in_a_row_or_a_reject(tmp_path, seed, flips):
    buf = bytearray(SEEDS[seed])
    for pos, bit in flips:
        buf[pos % len(buf)] ^= 1 << bit
    assert _outcome(tmp_path, bytes(buf)) in ("ok", "rejected")


@FAST
@given(seed=st.integers(0, len(SEEDS) - 1), cut=st.floats(0, 1))
def test_truncations_end_in_a_row_or_a_reject(tmp_path, seed, cut):
    data = SEEDS[seed]
    assert _outcome(tmp_path, data[: int(len(data) * cut)]) in ("ok", "rejected")


@FAST
@given(body=st.binary(max_size=400), fmt=st.integers(0, 2), tpq=st.integers(0, 0xFFFF))
def test_arbitrary_track_bodies_end_in_a_row_or_a_reject(tmp_path, body, fmt, tpq):
    """A well-framed file with arbitrary event bytes: the event parser's corners."""
    data = mutate.join_chunks(struct.pack(">HHH", fmt, 1, tpq), [(b"MTrk", body)])
    assert _outcome(tmp_path, data) in ("ok", "rejected")


@FAST
@given(
    events=st.lists(
        st.tuples(
            st.integers(0, 0x0FFFFFFF),
            st.sampled_from([0x80, 0x90, 0xA0, 0xB0, 0xE0, None]),
            st.integers(0, 127),
            st.integers(0, 127),
        ),
        max_size=60,
    )
)
def test_arbitrary_note_events_end_in_a_row_or_a_reject(tmp_path, events):
    """Structured events: huge deltas, running status (None), orphan note-offs, velocity 0."""
    body = b"".join(
        mutate.vlq(delta) + (bytes([status]) if status is not None else b"") + bytes([a, b])
        for delta, status, a, b in events
    )
    data = mutate.join_chunks(
        struct.pack(">HHH", 0, 1, 96), [(b"MTrk", body + b"\x00" + mutate.END_OF_TRACK)]
    )
    assert _outcome(tmp_path, data) in ("ok", "rejected")


def test_framing_check_accepts_every_real_file():
    """No good file is lost to the framing check: every MIDI file of ../shared/datasets."""
    files = mutate.seed_files(SHARED / "datasets", limit=None)
    if not files:
        pytest.skip("../shared/datasets is absent")
    for path in files:
        check_midi_bytes(path.read_bytes())


# ---------------------------------------------------------------- the whole stage


def test_prepare_stage_survives_a_hostile_corpus(tmp_path):
    """The real stage over good files plus mutants: every file ends as a piece or a rejects
    row with a reason, and no good file is lost."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "raw" / "toy"
    rows = []
    for i in range(12):
        path = write_score(folder / "midi" / f"good{i:02d}.mid", chorale_like(rng), (0, 0))
        rows.append({"piece_id": f"good{i:02d}", "path": f"midi/{path.name}"})
    cases = [
        (name.replace("/", "_"), data)
        for name, data in mutate.mutants(SEEDS[-1:], random.Random(2), n_random=60)
    ]
    cases = [c for c in cases if not c[0].startswith("many_notes")]  # kept fast
    for name, data in cases:
        (folder / "midi" / f"{name}.mid").write_bytes(data)
        rows.append({"piece_id": name, "path": f"midi/{name}.mid"})
    write_manifest(
        folder,
        [
            dict(r, title=r["piece_id"], format="midi", status="ok", source_path=r["path"])
            for r in rows
        ],
        TOY_SOURCE,
    )
    prepare(tmp_path / "raw", ["toy"], tmp_path / "prepared", PrepareParams())
    pieces = pd.read_parquet(tmp_path / "prepared" / "pieces.parquet")
    rejects = pd.read_parquet(tmp_path / "prepared" / "rejects.parquet")
    kept, rejected = set(pieces.piece_id), set(rejects.piece_id)
    assert {f"toy/good{i:02d}" for i in range(12)} <= kept  # no good piece lost
    assert kept | rejected == {f"toy/{r['piece_id']}" for r in rows}
    assert not kept & rejected
    assert (rejects.reason.str.len() > 0).all()


# ---------------------------------------------------------------- LPD .npz (zip archives)


def _lpd_seed() -> bytes:
    """A real LPD file when ../shared/datasets has one, else a pypianoroll-written one."""
    real = sorted((SHARED / "datasets" / "lpd_cleansed_sample").rglob("*.npz"))
    if real:
        return min(real, key=lambda p: p.stat().st_size).read_bytes()
    import tempfile

    roll = np.zeros((96, 128), np.uint8)
    roll[0:24, 60] = roll[24:48, 64] = 90
    mt = pypianoroll.Multitrack(
        resolution=24,
        tracks=[pypianoroll.StandardTrack(name="Piano", program=0, is_drum=False, pianoroll=roll)],
    )
    with tempfile.TemporaryDirectory() as tmp:
        pypianoroll.save(Path(tmp) / "s.npz", mt)
        return (Path(tmp) / "s.npz").read_bytes()


LPD_SEED = _lpd_seed()


def _read_lpd_bytes(tmp_path: Path, data: bytes) -> str:
    from cadenza.prepare.readers import read_lpd

    path = tmp_path / "case.npz"
    path.write_bytes(data)
    try:
        read_lpd(path, "program")
    except RejectedPiece as err:
        assert str(err)
        return "rejected"
    return "ok"


@FAST
@given(
    flips=st.lists(st.tuples(st.integers(0, 1 << 22), st.integers(0, 7)), max_size=8),
    cut=st.floats(0.0, 1.0),
)
def test_npz_bit_flips_and_truncations_end_in_a_row_or_a_reject(tmp_path, flips, cut):
    buf = bytearray(LPD_SEED[: max(1, int(len(LPD_SEED) * cut))])
    for pos, bit in flips:
        buf[pos % len(buf)] ^= 1 << bit
    assert _read_lpd_bytes(tmp_path, bytes(buf)) in ("ok", "rejected")


def test_npz_that_claims_a_huge_roll_is_refused_before_allocating(tmp_path):
    """A few-KB npz whose stored shape says (10^9, 128): pypianoroll would allocate 128 GB."""
    import io
    import zipfile

    src, out = zipfile.ZipFile(io.BytesIO(LPD_SEED)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "pianoroll_0_csc_shape.npy":
                buf = io.BytesIO()
                np.save(buf, np.array([10**9, 128], np.int64))
                data = buf.getvalue()
            dst.writestr(info.filename, data)
    path = tmp_path / "bomb.npz"
    path.write_bytes(out.getvalue())
    from cadenza.prepare.readers import read_lpd

    with pytest.raises(RejectedPiece, match=r"claims shape \[1000000000, 128\]"):
        read_lpd(path, "program")


# ---------------------------------------------------------------- source archives


def _archives() -> dict[str, bytes]:
    """A small zip and tar.gz of real MIDI bytes, as the fetchers receive them."""
    import io
    import tarfile
    import zipfile

    members = {f"corpus/a/{i}.mid": SEEDS[i % len(SEEDS)] for i in range(3)}
    zbuf, tbuf = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return {"zip": zbuf.getvalue(), "tar.gz": tbuf.getvalue()}


ARCHIVES = _archives()


@FAST
@given(
    kind=st.sampled_from(sorted(ARCHIVES)),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 7)), max_size=6),
)
def test_damaged_archives_extract_or_fail_with_a_clear_error(tmp_path, kind, cut, flips):
    """Truncated or bit-flipped archives: extracted, or refused naming the archive; never
    another exception, a hang or a write outside the target."""
    import tempfile

    from cadenza.sources.extract import CorruptArchive, UnsafeArchive, safe_extract

    data = ARCHIVES[kind]
    buf = bytearray(data[: max(1, int(len(data) * cut))])
    for pos, bit in flips:
        buf[pos % len(buf)] ^= 1 << bit
    case = Path(tempfile.mkdtemp(dir=tmp_path))
    archive = case / f"a.{kind}"
    archive.write_bytes(bytes(buf))
    try:
        safe_extract(archive, case / "out", max_bytes=10_000_000)
    except (CorruptArchive, UnsafeArchive) as err:
        assert str(archive) in str(err)
    assert {p.name for p in case.iterdir()} <= {archive.name, "out"}  # nothing outside
