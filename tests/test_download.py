"""The downloader and safe extraction, against a real loopback HTTP server."""

import hashlib
import io
import tarfile
import zipfile

import pytest

from cadenza.sources.download import ChecksumError, fetch_file
from cadenza.sources.extract import UnsafeArchive, safe_extract
from cadenza.testing.loopback import Site, serve

BLOB = bytes(range(256)) * 4000  # ~1 MB
SHA = hashlib.sha256(BLOB).hexdigest()


def test_download_verifies_and_caches(tmp_path):
    site = Site()
    site.files["/a.bin"] = BLOB
    with serve(site):
        path = fetch_file(site.url("/a.bin"), tmp_path, "a.bin", SHA, len(BLOB))
        assert path.read_bytes() == BLOB
        fetch_file(site.url("/a.bin"), tmp_path, "a.bin", SHA, len(BLOB))
    assert len(site.requests) == 1  # the second call used the cache


def test_dropped_connection_is_resumed_with_range(tmp_path):
    site = Site()
    site.files["/a.bin"] = BLOB
    site.drop_after["/a.bin"] = 300_000
    with serve(site):
        path = fetch_file(site.url("/a.bin"), tmp_path, "a.bin", SHA, backoff_s=0.01)
    assert path.read_bytes() == BLOB
    assert site.requests == [("/a.bin", ""), ("/a.bin", "bytes=300000-")]
    assert not (tmp_path / "a.bin.part").exists()


def test_half_downloaded_part_from_a_killed_run_is_resumed(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(BLOB[:12345])
    site = Site()
    site.files["/a.bin"] = BLOB
    with serve(site):
        assert fetch_file(site.url("/a.bin"), tmp_path, "a.bin", SHA).read_bytes() == BLOB
    assert site.requests == [("/a.bin", "bytes=12345-")]


def test_a_resume_answered_from_another_byte_is_discarded_not_spliced(tmp_path):
    """A broken proxy answers `Range: bytes=12345-` with the whole file as a 206: appended,
    it made a file 12,345 bytes too long, trusted on first use as it has no checksum."""
    (tmp_path / "a.bin.part").write_bytes(BLOB[:12345])
    site = Site()
    site.files["/a.bin"] = BLOB
    site.resume_from_zero.add("/a.bin")
    with serve(site):
        assert (
            fetch_file(site.url("/a.bin"), tmp_path, "a.bin", backoff_s=0.01).read_bytes() == BLOB
        )
    assert site.requests == [("/a.bin", "bytes=12345-"), ("/a.bin", "")]


def test_a_part_longer_than_the_file_is_discarded_and_a_whole_one_kept(tmp_path):
    (tmp_path / "a.bin.part").write_bytes(BLOB + b"junk" * 250)
    site = Site()
    site.files["/a.bin"] = BLOB
    with serve(site):
        assert (
            fetch_file(site.url("/a.bin"), tmp_path, "a.bin", backoff_s=0.01).read_bytes() == BLOB
        )
        assert site.requests == [("/a.bin", f"bytes={len(BLOB) + 1000}-"), ("/a.bin", "")]
        (tmp_path / "b.bin.part").write_bytes(BLOB)  # complete: the 416 says the same length
        assert fetch_file(site.url("/a.bin"), tmp_path, "b.bin", SHA).read_bytes() == BLOB
    assert site.requests[-1] == ("/a.bin", f"bytes={len(BLOB)}-")


def test_a_part_of_an_older_version_is_not_spliced_onto_the_new_one(tmp_path):
    """If-Range carries the version the `.part` began from: the changed file comes whole."""
    new = BLOB[::-1]
    site = Site()
    site.files["/a.bin"], site.etag["/a.bin"] = BLOB, '"v1"'
    site.drop_after["/a.bin"] = 300_000
    with serve(site):
        with pytest.raises(RuntimeError, match="giving up after 1 attempts"):
            fetch_file(site.url("/a.bin"), tmp_path, "a.bin", retries=0)  # a killed run
        assert (tmp_path / "a.bin.part").stat().st_size == 300_000
        site.files["/a.bin"], site.etag["/a.bin"] = new, '"v2"'
        assert fetch_file(site.url("/a.bin"), tmp_path, "a.bin").read_bytes() == new
    assert site.requests[-1] == ("/a.bin", "bytes=300000-") and site.if_range[-1] == '"v1"'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.bin.sha256"]


def test_checksum_mismatch_stops_and_keeps_nothing(tmp_path):
    site = Site()
    site.files["/a.bin"] = BLOB[:-1] + b"X"
    with serve(site), pytest.raises(ChecksumError, match="does not match"):
        fetch_file(site.url("/a.bin"), tmp_path, "a.bin", SHA)
    assert list(tmp_path.iterdir()) == []


def test_not_found_fails_without_retrying(tmp_path):
    site = Site()
    with serve(site), pytest.raises(RuntimeError, match="HTTP 404"):
        fetch_file(site.url("/missing"), tmp_path, "m", retries=3, backoff_s=0.01)
    assert len(site.requests) == 1


def test_local_path_and_file_url_are_verified_in_place(tmp_path):
    local = tmp_path / "mine.bin"
    local.write_bytes(BLOB)
    assert fetch_file(str(local), tmp_path / "cache", "x", SHA) == local
    assert fetch_file(local.as_uri(), tmp_path / "cache", "x", SHA) == local
    with pytest.raises(ChecksumError):
        fetch_file(str(local), tmp_path / "cache", "x", "0" * 64)


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _tar(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        add(tf)
    return buf.getvalue()


def _file(tf: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _link(tf: tarfile.TarFile, name: str, target: str, kind=tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tf.addfile(info)


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("slip.zip", _zip({"ok.txt": b"1", "../../evil.txt": b"2"}), "'..' in a path"),
        ("abs.zip", _zip({"/tmp/evil.txt": b"2"}), "absolute paths"),
        ("link.zip", _zip({"ok.txt": b"1"}, symlink="innocent"), "symlinks are refused"),
        (
            "trav.tar.gz",
            _tar(lambda tf: (_file(tf, "a/ok.txt"), _file(tf, "a/../../evil"))),
            "'..' in a path",
        ),
        (
            "sym.tar.gz",
            _tar(lambda tf: (_file(tf, "a/ok.txt"), _link(tf, "a/l", "../../etc"))),
            "pointing outside",
        ),
        (
            "hard.tar.gz",
            _tar(lambda tf: _link(tf, "h", "/etc/passwd", tarfile.LNKTYPE)),
            "pointing outside",
        ),
        ("bomb.zip", _zip({"big.bin": b"\0" * 3_000_000}), "more than 1,000,000 bytes"),
        # a link read as text stays inside; through another symlink it lands outside
        (
            "chain.tar.gz",
            _tar(lambda tf: (_link(tf, "x", "."), _link(tf, "l", "x/x/x/../../.."))),
            r"l -> x/x/x/\.\./\.\./\.\.: a link through the symlink x is refused",
        ),
        (
            "through.tar.gz",
            _tar(lambda tf: (_link(tf, "a", "b"), _file(tf, "b/ok"), _file(tf, "a/evil"))),
            "a/evil: written through the symlink a",
        ),
        (  # archive order cannot hide it: the file comes before the link it goes through
            "later.tar.gz",
            _tar(lambda tf: (_file(tf, "d/f"), _link(tf, "d", "."))),
            "d/f: written through the symlink d",
        ),
    ],
)
def test_unsafe_archives_are_refused_and_write_nothing(tmp_path, name, payload, message):
    archive = tmp_path / name
    archive.write_bytes(payload)
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchive, match=message):
        safe_extract(archive, target, max_bytes=1_000_000)
    assert not any(target.rglob("*"))
    assert not (tmp_path / "evil.txt").exists()


def test_links_inside_the_target_are_fine(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(
        _tar(lambda tf: (_file(tf, "a/b/x.txt", b"hi"), _link(tf, "a/c/l", "../b/x.txt")))
    )
    safe_extract(archive, tmp_path / "out", max_bytes=1_000_000)
    assert (tmp_path / "out" / "a" / "c" / "l").read_bytes() == b"hi"
