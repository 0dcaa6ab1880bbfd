"""Archive integrity before extraction (issue #18, item 5) and the default extraction cap.

tarfile never reads a gzip stream's CRC trailer, so one flipped byte in a `.tar.gz` used to
extract without error, with a member holding wrong bytes; a truncated zip was reported as
"neither a zip nor a tar archive"; and a 1 MB zip unpacking to 1 GB was extracted under the old
20 GB default. Every test here runs the real `safe_extract` on real archive bytes.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from cadenza.config import ParamsError, SourceParams, from_dict
from cadenza.sources.extract import (
    MIN_CAP,
    RATIO_CAP,
    CorruptArchive,
    UnsafeArchive,
    extract_cap,
    list_members,
    safe_extract,
)
from cadenza.sources.fetch import fetch_source
from cadenza.sources.registry import SOURCES
from cadenza.testing.checkout import DATASETS

ESSEN = DATASETS / "essen" / "europa" / "deutschl" / "erk"
needs_shared = pytest.mark.skipif(
    not ESSEN.is_dir(), reason="needs ../shared/datasets/essen (real kern files)"
)
MIB = 1 << 20
BOMB_MIB = 1000  # what the bombs unpack to: 1,048,576,000 bytes from about 1 MB


def _essen_files(n: int = 200) -> dict[str, bytes]:
    """The first `n` real kern files of Essen's erk collection, by archive name."""
    return {f"erk/{p.name}": p.read_bytes() for p in sorted(ESSEN.glob("*.krn"))[:n]}


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _synthetic(n: int = 20) -> dict[str, bytes]:
    """Text-like members that deflate, distinct enough that a flip lands in one of them."""
    return {
        f"d/{i:02d}.txt": b"".join(b"line %d of member %d\n" % (j, i) for j in range(300))
        for i in range(n)
    }


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _flip(data: bytes, pos: int) -> bytes:
    buf = bytearray(data)
    buf[pos] ^= 0x20
    return bytes(buf)


def _nothing_written(target: Path) -> bool:
    return not target.exists() or not any(target.iterdir())


def _zero_blocks(mib: int, crc: int = 0) -> tuple[bytes, int]:
    """Raw deflate blocks (none final) of `mib` MiB of zeros, and the CRC-32 continued from
    `crc` over them, without compressing or holding `mib` MiB: after a full flush the
    compressor starts afresh, so every MiB of zeros deflates to the same bytes."""
    zeros = bytes(MIB)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return block * mib, crc


def _final_block() -> bytes:
    """An empty final deflate block: ends a stream of blocks that each end byte-aligned."""
    return zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def _zip_bomb() -> bytes:
    """A valid one-member zip (about 1 MB) of BOMB_MIB MiB of zeros, laid out by hand."""
    blocks, crc = _zero_blocks(BOMB_MIB)
    data = blocks + _final_block()
    name, size = b"zeros.bin", BOMB_MIB * MIB
    local = (
        struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 33, crc, len(data), size, len(name), 0)
        + name
    )
    central = (
        struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            0,
            8,
            0,
            33,
            crc,
            len(data),
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        + name
    )
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0
    )
    return local + data + central + end


def _tar_gz_bomb() -> bytes:
    """A valid .tar.gz (about 1 MB) whose one member is BOMB_MIB MiB of zeros."""
    info = tarfile.TarInfo("zeros.bin")
    info.size = BOMB_MIB * MIB
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    end = bytes(2 * 512)  # the member fills whole blocks; then the end-of-archive marker
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    blocks, crc = _zero_blocks(BOMB_MIB, zlib.crc32(header))
    tail = comp.compress(end) + comp.flush()
    crc = zlib.crc32(end, crc)
    length = (len(header) + BOMB_MIB * MIB + len(end)) & 0xFFFFFFFF
    gz_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return gz_header + head + blocks + tail + struct.pack("<2L", crc, length)


# ------------------------------------------------------------------ corrupt, truncated


@needs_shared
@pytest.mark.parametrize("where", [0.25, 0.5, 0.75])
def test_a_flipped_byte_in_a_real_tar_gz_is_refused_and_nothing_written(tmp_path, where):
    files = _essen_files(200)
    good = _tar_gz(files)
    archive = _write(tmp_path, "essen.tar.gz", _flip(good, int(len(good) * where)))
    target = tmp_path / "out"
    with pytest.raises(CorruptArchive, match=r"gzip (CRC mismatch|stream ends early|data)") as err:
        safe_extract(archive, target, 100_000_000)
    assert str(archive) in str(err.value)
    assert _nothing_written(target)
    with pytest.raises(CorruptArchive):  # listing reads the same stream, and checks it too
        list_members(archive)


@needs_shared
def test_a_good_real_tar_gz_and_zip_still_extract_byte_for_byte(tmp_path):
    files = _essen_files(200)
    for name, data in (("essen.tar.gz", _tar_gz(files)), ("essen.zip", _zip(files))):
        target = tmp_path / name
        safe_extract(_write(tmp_path, "a-" + name, data), target, 100_000_000)
        got = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
        assert got == files, name
        assert list_members(tmp_path / ("a-" + name)) == list(files)


def test_a_flipped_byte_in_a_stored_zip_member_names_the_member_and_its_crc(tmp_path):
    files = _synthetic()
    good = _zip(files, zipfile.ZIP_STORED)
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        info = zf.getinfo("d/07.txt")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    archive = _write(tmp_path, "a.zip", _flip(good, start + 100))
    target = tmp_path / "out"
    with pytest.raises(CorruptArchive, match=r"zip member d/07\.txt: bad CRC") as err:
        safe_extract(archive, target, 10_000_000)
    assert str(archive) in str(err.value)
    assert _nothing_written(target)  # the 7 good members before it were not written either


@pytest.mark.parametrize("offset", [20, 200, 400])
def test_a_flipped_byte_in_a_deflated_zip_member_names_the_member(tmp_path, offset):
    files = _synthetic()
    good = _zip(files)
    with zipfile.ZipFile(io.BytesIO(good)) as zf:
        info = zf.getinfo("d/12.txt")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    assert offset < info.compress_size
    archive = _write(tmp_path, "a.zip", _flip(good, start + offset))
    target = tmp_path / "out"
    with pytest.raises(CorruptArchive, match=r"zip member d/12\.txt: (bad CRC|corrupt)"):
        safe_extract(archive, target, 10_000_000)
    assert _nothing_written(target)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_a_truncated_zip_is_reported_as_a_truncated_zip(tmp_path, keep):
    good = _zip(_synthetic())
    archive = _write(tmp_path, "a.zip", good[: int(len(good) * keep)])
    target = tmp_path / "out"
    for call in (lambda: safe_extract(archive, target, 10_000_000), lambda: list_members(archive)):
        with pytest.raises(CorruptArchive, match=r"a\.zip: truncated or corrupt zip"):
            call()
    assert _nothing_written(target)


@pytest.mark.parametrize("cut", [0.5, 0.9, -3])
def test_a_truncated_tar_gz_is_reported_as_truncated(tmp_path, cut):
    good = _tar_gz(_synthetic())
    end = cut if cut < 0 else int(len(good) * cut)
    archive = _write(tmp_path, "a.tar.gz", good[:end])
    target = tmp_path / "out"
    with pytest.raises(CorruptArchive, match=r"a\.tar\.gz: truncated: gzip stream ends early"):
        safe_extract(archive, target, 10_000_000)
    assert _nothing_written(target)


def test_garbage_after_the_gzip_stream_is_refused_and_zero_padding_is_not(tmp_path):
    good = _tar_gz(_synthetic())
    archive = _write(tmp_path, "a.tar.gz", good + b"<html>not found</html>")
    with pytest.raises(CorruptArchive, match="trailing garbage after the gzip stream"):
        safe_extract(archive, tmp_path / "out", 10_000_000)
    assert _nothing_written(tmp_path / "out")
    padded = _write(tmp_path, "b.tar.gz", good + bytes(512))  # tape-style padding: allowed
    safe_extract(padded, tmp_path / "padded", 10_000_000)
    assert len(list((tmp_path / "padded" / "d").iterdir())) == 20


def test_a_wrong_gzip_crc_trailer_alone_is_refused(tmp_path):
    """The deflate data intact, only the CRC field changed: nothing but the trailer shows it,
    and it is exactly what tarfile never reads."""
    good = _tar_gz(_synthetic())
    assert gzip.decompress(good)  # the original is a sound stream
    archive = _write(tmp_path, "a.tar.gz", _flip(good, len(good) - 6))
    with pytest.raises(CorruptArchive, match="gzip CRC mismatch"):
        safe_extract(archive, tmp_path / "out", 10_000_000)
    with tarfile.open(archive) as tf:  # what the old code relied on: no complaint
        assert len(tf.getmembers()) == 20


# ------------------------------------------------------------------ the extraction cap


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    path.write_bytes(_zip_bomb())
    return path


def test_the_zip_bomb_is_a_valid_1_mb_zip_of_1_gb(zip_bomb):
    """The fixture is what it claims, so the refusals below are about size, not damage."""
    assert zip_bomb.stat().st_size < 1.1e6
    with zipfile.ZipFile(zip_bomb) as zf:
        (info,) = zf.infolist()
        assert info.file_size == BOMB_MIB * MIB
        with zf.open(info) as fh:  # the first MiB inflates to zeros (CRC checked at the end)
            assert fh.read(MIB) == bytes(MIB)


def test_a_1_mb_zip_of_1_gb_is_refused_under_the_default_cap(zip_bomb, tmp_path):
    assert SourceParams().max_extract_mb == 0  # the default: sized, not a fixed 20 GB
    cap = extract_cap(zip_bomb, SourceParams().max_extract_mb, unpacked=0)
    assert cap == max(MIN_CAP, RATIO_CAP * zip_bomb.stat().st_size) < 100_000_000
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchive) as err:
        safe_extract(zip_bomb, target, cap, param="sources.mine.max_extract_mb")
    message = str(err.value)
    assert str(zip_bomb) in message
    assert f"would unpack to {BOMB_MIB * MIB:,} bytes" in message
    assert f"more than {cap:,} bytes" in message
    assert "raise sources.mine.max_extract_mb" in message
    assert _nothing_written(target)


def test_a_registry_source_is_capped_at_twice_its_known_size(zip_bomb, tmp_path):
    """Essen's kern edition is known to unpack to 6.4 MB: its cap is 12.8 MB, and the fetch
    stage refuses the bomb given as its mirror, naming the param to raise."""
    unpacked = SOURCES["essen"].files[0].unpacked
    assert 6_000_000 < unpacked < 7_000_000
    with pytest.raises(
        UnsafeArchive,
        match=rf"more than {2 * unpacked:,} bytes.*"
        r"raise sources\.essen\.max_extract_mb",
    ):
        fetch_source(
            "essen", tmp_path / "raw" / "essen", tmp_path / "cache", SourceParams(url=str(zip_bomb))
        )
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".bin"]
    for name in ("maestro", "maestro_v2", "lpd_cleansed", "lpd_5_cleansed", "lpd_17_cleansed"):
        assert SOURCES[name].files[0].unpacked > 50_000_000, name


def test_an_explicit_max_extract_mb_overrides_the_default(zip_bomb):
    assert extract_cap(zip_bomb, 2000, unpacked=6_000_000) == 2_000_000_000
    assert extract_cap(zip_bomb, 0, unpacked=6_000_000) == 12_000_000
    with pytest.raises(ParamsError, match=r"sources\.essen\.max_extract_mb: must be >= 1"):
        from_dict(SourceParams, {"max_extract_mb": -1}, "sources.essen")
    with pytest.raises(ParamsError, match=r"sources\.essen\.max_extract_mb: must be <= 1000000"):
        from_dict(SourceParams, {"max_extract_mb": 2**40}, "sources.essen")


def test_a_bomb_given_as_a_large_corpus_is_still_capped_by_its_ratio(tmp_path):
    """LPD-cleansed may unpack to 3.7 GB, but not from a 1 MB archive: the registry's size
    alone let this 1 MB tar.gz write its 1 GB member as LPD's mirror."""
    archive = _write(tmp_path, "lpd_cleansed.tar.gz", _tar_gz_bomb())
    unpacked = SOURCES["lpd_cleansed"].files[0].unpacked
    cap = extract_cap(archive, 0, unpacked)
    assert cap == max(MIN_CAP, RATIO_CAP * archive.stat().st_size) < 100_000_000 < 2 * unpacked
    with pytest.raises(UnsafeArchive, match=rf"more than {cap:,} bytes"):
        safe_extract(archive, tmp_path / "out", cap)
    assert _nothing_written(tmp_path / "out")


def test_a_tar_gz_bomb_is_refused_at_its_first_header(tmp_path):
    """The 1 GB member's header comes first: refused before its data is inflated."""
    archive = _write(tmp_path, "bomb.tar.gz", _tar_gz_bomb())
    assert archive.stat().st_size < 1.1e6
    target = tmp_path / "out"
    with pytest.raises(
        UnsafeArchive,
        match=rf"would unpack to at least {BOMB_MIB * MIB:,} "
        r"bytes, more than 50,000,000 bytes",
    ):
        safe_extract(archive, target, 50_000_000)
    assert _nothing_written(target)
    # and it is a sound gzip of a tar holding that member
    with gzip.open(archive) as fh, tarfile.open(fileobj=fh, mode="r|") as tf:
        assert next(iter(tf)).size == BOMB_MIB * MIB
