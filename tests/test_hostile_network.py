"""The downloader and crawler against a hostile network: a real loopback server that drips,
lies, cuts transfers short, sends garbage status lines and crafted links (issue 18)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from cadenza.config import SourceParams
from cadenza.sources.crawl import PoliteFetcher, crawl_piano_midi_de
from cadenza.sources.download import (
    ChecksumError,
    ContentError,
    DownloadTimeout,
    fetch_file,
)
from cadenza.sources.extract import CorruptArchive
from cadenza.sources.fetch import fetch_source
from cadenza.testing.archives import lpd_tar
from cadenza.testing.checkout import DATASETS, ROOT
from cadenza.testing.loopback import ERROR_PAGE, Site, serve

PICKLE = pickle.dumps({"train": [[[60, 64]]] * 200, "valid": [], "test": []}, protocol=2)
MIDI = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"
FAST = {"retries": 2, "backoff_s": 0.01}
needs_lpd = pytest.mark.skipif(
    not (DATASETS / "lpd_cleansed_sample").is_dir(),
    reason="needs ../shared/datasets/lpd_cleansed_sample (real LPD rolls)",
)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/x.txt", b"x" * 5000)
    return buf.getvalue()


def _tar(payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("lpd_cleansed/A/B/C/TRX/song.npz")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- bounded waits


def test_slow_drip_is_cut_by_the_minimum_rate(tmp_path):
    site = Site()
    site.files["/a.bin"] = b"x" * 1000
    site.drip["/a.bin"] = 0.05  # 20 B/s, forever as far as the client can tell
    start = time.monotonic()
    with serve(site), pytest.raises(RuntimeError, match=r"too slow: \d+ B/s over") as err:
        fetch_file(site.url("/a.bin"), tmp_path, "a.bin", min_rate=1000, rate_window_s=0.3, **FAST)
    assert time.monotonic() - start < 2.5
    assert site.url("/a.bin") in str(err.value) and "giving up after 3 attempts" in str(err.value)
    assert not (tmp_path / "a.bin").exists()


def test_slow_drip_is_cut_by_the_overall_deadline(tmp_path):
    site = Site()
    site.files["/a.bin"] = b"x" * 1000
    site.drip["/a.bin"] = 0.05
    start = time.monotonic()
    with serve(site), pytest.raises(DownloadTimeout, match="0.8 s deadline") as err:
        fetch_file(site.url("/a.bin"), tmp_path, "a.bin", deadline_s=0.8, min_rate=0, **FAST)
    assert time.monotonic() - start < 2.0
    assert site.url("/a.bin") in str(err.value)
    assert not (tmp_path / "a.bin").exists()
    assert 0 < (tmp_path / "a.bin.part").stat().st_size < 1000  # kept for a later resume


def test_garbage_status_line_is_retried_then_reported(tmp_path):
    site = Site()
    site.files["/a.bin"] = b"data"
    site.bad_status["/a.bin"] = 100
    with serve(site), pytest.raises(RuntimeError, match="BadStatusLine") as err:
        fetch_file(site.url("/a.bin"), tmp_path, "a.bin", **FAST)
    assert f"{site.url('/a.bin')}: giving up after 3 attempts" in str(err.value)
    assert len(site.requests) == 3 and not any(tmp_path.iterdir())


def test_garbage_status_line_once_then_the_file(tmp_path):
    site = Site()
    site.files["/a.bin"] = b"data"
    site.bad_status["/a.bin"] = 1
    with serve(site):
        assert fetch_file(site.url("/a.bin"), tmp_path, "a.bin", **FAST).read_bytes() == b"data"
    assert len(site.requests) == 2


# --------------------------------------------------------------------------- content


@pytest.mark.parametrize("name", ["JSB Chorales.pickle", "x.zip", "x.tar.gz", "x.mid"])
def test_html_error_page_is_never_accepted_as_data(tmp_path, name):
    site = Site()
    site.files["/f"] = b"unused"
    site.error_page.add("/f")  # 200 OK with an HTML page
    with serve(site), pytest.raises(ContentError) as err:
        fetch_file(site.url("/f"), tmp_path, name, **FAST)
    message = str(err.value)
    assert message.startswith(site.url("/f"))
    assert f'HTML page, {len(ERROR_PAGE)} bytes, starting "<html><body>' in message
    assert "not retried" in message
    assert len(site.requests) == 1 and not any(tmp_path.iterdir())


def test_html_page_in_the_cache_or_on_disk_is_refused(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"<!DOCTYPE html><title>404</title>")
    with pytest.raises(ContentError, match="HTML page, 33 bytes"):
        fetch_file(str(tmp_path / "x.zip"), tmp_path / "cache", "x.zip")
    site = Site()
    site.files["/x.zip"] = _zip()
    (tmp_path / "cache").mkdir()
    shutil.copy(tmp_path / "x.zip", tmp_path / "cache" / "x.zip")  # a bad earlier answer
    with serve(site):
        assert fetch_file(site.url("/x.zip"), tmp_path / "cache", "x.zip").read_bytes() == _zip()


@pytest.mark.parametrize(
    ("name", "body", "what"),
    [
        ("Nottingham.pickle", PICKLE, "no final STOP"),
        ("x.zip", _zip(), "no end-of-central-directory"),
        ("lpd_cleansed.tar.gz", _tar(bytes(range(256)) * 400), "gzip stream that ends before"),
    ],
)
def test_short_transfer_without_content_length_is_not_cached(tmp_path, name, body, what):
    site = Site()
    site.files["/f"] = body[: len(body) // 2]  # the server always stops half way
    site.no_length.add("/f")
    with serve(site), pytest.raises(RuntimeError, match=what) as err:
        fetch_file(site.url("/f"), tmp_path, name, **FAST)
    assert f"{site.url('/f')}: giving up after 3 attempts" in str(err.value)
    assert "ended early with no Content-Length" in str(err.value)
    assert not any(tmp_path.iterdir())  # neither the file, nor a .part, nor a recorded hash


def test_short_transfer_without_content_length_is_retried(tmp_path):
    site = Site()
    site.files["/f"] = PICKLE
    site.no_length.add("/f")
    site.drop_after["/f"] = 300  # once
    with serve(site):
        path = fetch_file(site.url("/f"), tmp_path, "JSB Chorales.pickle", **FAST)
    assert path.read_bytes() == PICKLE
    assert len(site.requests) == 2


# --------------------------------------------------------------------------- trust on first use


def test_first_fetch_records_the_hash_and_changed_bytes_are_refused(tmp_path):
    site = Site()
    site.files["/x.zip"] = _zip()
    cache = tmp_path / "cache"
    sidecar = cache / "x.zip.sha256"
    first = hashlib.sha256(_zip()).hexdigest()
    with serve(site):
        fetch_file(site.url("/x.zip"), cache, "x.zip", **FAST)
        assert sidecar.read_text().split()[0] == first
        fetch_file(site.url("/x.zip"), cache, "x.zip", **FAST)  # the cached copy matches
        assert len(site.requests) == 1
        site.files["/x.zip"] = changed = _zip()[:30] + b"Y" + _zip()[31:]
        (cache / "x.zip").unlink()
        with pytest.raises(ChecksumError, match="changed since the first fetch") as err:
            fetch_file(site.url("/x.zip"), cache, "x.zip", **FAST)
        message = str(err.value)
        assert site.url("/x.zip") in message and first in message
        assert hashlib.sha256(changed).hexdigest() in message
        assert f"delete {sidecar}" in message and "sha256" in message
        assert _files(cache) == ["x.zip.sha256"]
        (cache / "x.zip").write_bytes(changed)  # a cache swapped behind our back
        with pytest.raises(ChecksumError, match="changed since the first fetch"):
            fetch_file(site.url("/x.zip"), cache, "x.zip", **FAST)
        sidecar.unlink()  # the documented way to accept the new file
        assert fetch_file(site.url("/x.zip"), cache, "x.zip", **FAST).read_bytes() == changed


def test_fetch_stage_writes_downloads_json(tmp_path):
    site = Site()
    tar = _tar(b"not really a roll")
    site.files["/lpd_cleansed.tar.gz"] = tar
    out, cache = tmp_path / "raw", tmp_path / "cache"
    with serve(site):
        url = site.url("/lpd_cleansed.tar.gz")
        fetch_source("lpd_cleansed", out, cache, SourceParams(url=url))
        recorded = json.loads((out / "downloads.json").read_text())
        sha = hashlib.sha256(tar).hexdigest()
        assert recorded == [
            {
                "name": "lpd_cleansed.tar.gz",
                "url": url,
                "sha256": sha,
                "size": len(tar),
                "hash": "recorded at first fetch",
            }
        ]
        fetch_source("lpd_cleansed", out, cache, SourceParams(url=url, sha256=sha))
        assert json.loads((out / "downloads.json").read_text())[0]["hash"] == "pinned"
        site.files["/lpd_cleansed.tar.gz"] = _tar(b"other bytes")
        (cache / "lpd_cleansed.tar.gz").unlink()
        before = _files(out)
        with pytest.raises(ChecksumError, match="changed since the first fetch"):
            fetch_source("lpd_cleansed", out, cache, SourceParams(url=url))
        assert _files(out) == before  # the last good fetch is untouched


@needs_lpd
def test_a_truncated_tar_gz_with_a_matching_length_is_never_cached(tmp_path):
    """The server's Content-Length matches what it sends, but the gzip ends early: refused
    before it reaches the cache, and a cut copy already there is downloaded again."""
    whole = lpd_tar(2)
    site = Site()
    site.files["/lpd.tar.gz"] = whole[:-5000]
    cache = tmp_path / "cache"
    with serve(site):
        url = site.url("/lpd.tar.gz")
        with pytest.raises(ContentError, match="ends before its trailer.*nothing was kept"):
            fetch_file(url, cache, "lpd.tar.gz", **FAST)
        assert _files(cache) == []
        site.files["/lpd.tar.gz"] = whole
        (cache / "lpd.tar.gz").write_bytes(whole[:-5000])  # cached by an older Cadenza
        assert fetch_file(url, cache, "lpd.tar.gz", **FAST).read_bytes() == whole


@needs_lpd
def test_a_damaged_archive_leaves_the_cache_so_the_next_run_asks_again(tmp_path):
    """A sound gzip of a cut tar passes every download check and fails at extraction: the
    error names the URL, and the cached copy and its first-fetch hash are gone, so the run
    after the server is mended downloads the good file instead of failing on the old one."""
    whole = lpd_tar(2)
    with gzip.open(io.BytesIO(whole)) as fh:
        raw = fh.read()
    site = Site()
    site.files["/lpd_cleansed.tar.gz"] = gzip.compress(raw[: len(raw) // 2])
    out, cache = tmp_path / "raw", tmp_path / "cache"
    with serve(site):
        url = site.url("/lpd_cleansed.tar.gz")
        with pytest.raises(CorruptArchive) as err:
            fetch_source("lpd_cleansed", out, cache, SourceParams(url=url))
        assert str(err.value).startswith(f"{url}: ")
        assert "so the next run downloads it again" in str(err.value)
        assert _files(cache) == []
        site.files["/lpd_cleansed.tar.gz"] = whole
        fetch_source("lpd_cleansed", out, cache, SourceParams(url=url))
    assert len(list((out / "files").rglob("*.npz"))) == 2


@needs_lpd
def test_a_failed_fetch_is_one_line_not_a_traceback(tmp_path):
    site = Site()
    site.files["/lpd_cleansed.tar.gz"] = lpd_tar(1)[:-5000]
    params = tmp_path / "params.yaml"
    with serve(site):
        url = site.url("/lpd_cleansed.tar.gz")
        shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
        params.write_text(yaml.safe_dump({**shipped, "sources": {"lpd_cleansed": {"url": url}}}))
        command = [sys.executable, "-m", "cadenza.cli", "fetch", "lpd_cleansed"]
        command += ["--out", str(tmp_path / "raw"), "--cache", str(tmp_path / "cache")]
        done = subprocess.run(
            [*command, "--params", str(params)], capture_output=True, text=True, check=False
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"error: ContentError: {url}: got a gzip stream" in done.stderr


# --------------------------------------------------------------------------- https


@pytest.fixture
def tls(tmp_path, monkeypatch):
    """A self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


def test_https_is_not_redirected_to_plain_http(tmp_path, tls):
    plain, secure = Site(), Site()
    plain.files["/a.bin"] = secure.files["/a.bin"] = b"data"
    with serve(plain), serve(secure, tls=tls):
        assert fetch_file(secure.url("/a.bin"), tmp_path, "a.bin").read_bytes() == b"data"
        secure.redirect["/b.bin"] = plain.url("/a.bin")
        with pytest.raises(RuntimeError, match="redirect from https to http://.* refused"):
            fetch_file(secure.url("/b.bin"), tmp_path, "b.bin", **FAST)
    assert plain.requests == []  # the plain-http copy was never asked for


# --------------------------------------------------------------------------- crawler


CRAFTED = [
    "../pwn.mid",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/pwn.mid",
    "..%2f..%2f..%2fpwn.mid",
    "..%5c..%5c..%5cpwn.mid",
    "..\\..\\pwn.mid",
    "/pwn.mid",
    "/site/midis/%2e%2e/x.mid",
    "http://other.host/site/midis/bach/x.mid",
]


def test_crawler_links_stay_on_the_site_and_in_the_cache(tmp_path, caplog):
    site = Site()
    links = "".join(f'<a href="{href}">x</a>' for href in [*CRAFTED, "midis/bach/ok.mid"])
    site.files["/site/midis.htm"] = (
        b'<html><a href="bach.htm">Bach</a>'
        b'<a href="../up.htm">up</a><a href="%2e%2e/up.htm">up</a></html>'
    )
    site.files["/site/bach.htm"] = f"<html>{links}</html>".encode()
    site.files["/site/midis/bach/ok.mid"] = MIDI
    for path in ["/pwn.mid", "/up.htm", "/site/%2e%2e/up.htm"]:
        site.files[path] = MIDI if path.endswith(".mid") else b"<html></html>"
    work = tmp_path / "work"
    cache, out = work / "deep" / "cache", work / "deep" / "out"
    with serve(site):
        rows = crawl_piano_midi_de(site.url("/site/midis.htm"), out, cache, 0.0, 0)
    assert [r["piece_id"] for r in rows] == ["bach/ok"]
    assert {path for path, _ in site.requests} == {
        "/site/midis.htm",
        "/site/bach.htm",
        "/site/midis/bach/ok.mid",
    }
    assert all(p.startswith(("deep/cache/", "deep/out/")) for p in _files(work))
    skipped = [r.getMessage() for r in caplog.records if "link skipped" in r.getMessage()]
    assert len(skipped) == len(CRAFTED) + 2
    assert any("%2e%2e/%2e%2e" in m and "'..'" in m for m in skipped)
    assert any("other.host" in m and "another site" in m for m in skipped)


def test_crawler_cache_name_never_leaves_the_cache(tmp_path):
    site = Site()
    cache = tmp_path / "cache"
    with serve(site), pytest.raises(ValueError, match="outside the download cache") as err:
        PoliteFetcher(cache, 0.0).get(site.url("/a/%2e%2e/%2e%2e/%2e%2e/x.mid"))
    assert site.url("/a/%2e%2e") in str(err.value)
    assert site.requests == [] and not (tmp_path / "x.mid").exists()
