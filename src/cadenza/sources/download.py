"""A careful downloader: stream, resume, retry, verify, then move into place.

Why: the network and the servers on it are not trusted. A mirror may answer with an HTML
error page, cut a transfer short without saying how long it was, drip one byte at a time, or
send garbage instead of an HTTP status line; none of that may end up in the cache as a file.

* Streams in chunks with a progress bar.
* A partial download (`<name>.part`) is resumed with an HTTP Range request, and only where
  the server answers with the very next byte (its Content-Range); with `If-Range` where the
  server named the file's version (ETag or Last-Modified), so a changed file is sent whole.
  A server that ignores Range, resumes elsewhere, or says the `.part` is longer than the file
  gets a fresh download. A `.part` file is never used as an archive.
* Transient failures (connection drops, timeouts, protocol errors such as a bad status line,
  TLS errors, HTTP 5xx / 429, a transfer below `min_rate`) are retried with exponential
  backoff; anything else (404, 403, ...) fails at once. Every message names the URL.
* Bounded waits: one overall `deadline_s` per download, all attempts together, and a minimum
  transfer rate averaged over `rate_window_s`.
* Content sniffing: the bytes must look like the kind of file the cache name says (`.zip`,
  `.tar.gz`, `.pickle`, `.mid`, `.htm`); an HTML page is never a zip, gzip, pickle or MIDI
  file. A pickle without its final STOP or a zip without its end-of-central-directory record
  came from a cut transfer: retried when the server gave no Content-Length. A `.tar.gz` must
  also decompress to its gzip trailer, before it is cached and every time it is used.
* Checksums: a pinned sha256 is verified before the file is renamed into the cache. A file
  with none is trusted on first use: its sha256 is recorded beside it (`<name>.sha256`) and
  every later copy, cached or downloaded, must match. A mismatch deletes the bad bytes and
  stops the run.
* A file already in the cache that passes these checks is not downloaded again.
* A download that starts on https is never redirected to plain http.
* `file://` URLs and plain local paths are verified and used in place (LPD users usually have
  the archive already).
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import logging
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from cadenza.io import atomic_path, sha256_file
from cadenza.sources.extract import CorruptArchive, check_stream
from cadenza.sources.sniff import expected_kind, sniff

log = logging.getLogger(__name__)

USER_AGENT = "cadenza/0.1 (+https://github.com/cadenza-music/cadenza; research pipeline)"
CHUNK = 1 << 16
DEADLINE_S = 30 * 60.0  # one download, all attempts together
MIN_RATE = 1024  # bytes per second, averaged over RATE_WINDOW_S
RATE_WINDOW_S = 30.0
PINNED, FIRST_FETCH, LOCAL = "pinned", "recorded at first fetch", "local file, not pinned"


class ChecksumError(RuntimeError):
    """The downloaded bytes are not the published ones; nothing was used."""


class ContentError(RuntimeError):
    """The server answered with something that is not the file (an HTML error page): asking
    again would get the same answer, so it is not retried."""


class TransientError(RuntimeError):
    """A failure worth retrying: the network, not the request, went wrong."""


class DownloadTimeout(RuntimeError):
    """The overall deadline passed; the partial file is kept for a later resume."""


@dataclass(frozen=True)
class Limits:
    """The bounds on one download's waits."""

    timeout_s: float  # one socket read or connect
    deadline_s: float  # the whole download, all attempts together
    min_rate: float  # bytes per second over rate_window_s
    rate_window_s: float


_FETCHED: contextvars.ContextVar[list[dict] | None] = contextvars.ContextVar(
    "cadenza_fetched", default=None
)


@contextlib.contextmanager
def recording() -> Iterator[list[dict]]:
    """Collect one entry per registry file fetched inside the block (name, url, sha256, size
    and whether the hash was pinned or recorded at first fetch), so the stage that fetched
    can write them into its output and DVC's lock records them."""
    entries: list[dict] = []
    token = _FETCHED.set(entries)
    try:
        yield entries
    finally:
        _FETCHED.reset(token)


def fetch_file(
    url: str,
    cache: Path,
    name: str,
    sha256: str = "",
    size: int = 0,
    *,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    deadline_s: float = DEADLINE_S,
    min_rate: float = MIN_RATE,
    rate_window_s: float = RATE_WINDOW_S,
    first_use: bool = True,
) -> Path:
    """Return a verified local copy of `url` (a URL, `file://` URL or path).

    `first_use`: with no `sha256`, record the hash of the first fetch and hold every later
    copy to it (registry files); False for pages that are expected to change (a crawl).
    `sha256` is taken as well-formed: params are checked at load, the registry's by a test."""
    local = local_path(url)
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(f"{local}: no such file (given as the source location)")
        problem, _ = sniff(local, name)
        if problem:
            raise ContentError(f"{local}: {problem}")
        digest = verify(local, sha256, size, url)
        _note(first_use, name, url, digest, local, PINNED if sha256 else LOCAL)
        return local
    target = cache / name
    target.parent.mkdir(parents=True, exist_ok=True)
    sidecar = target.with_name(target.name + ".sha256")
    expected, origin = sha256.lower(), PINNED
    if not sha256 and first_use:
        expected, origin = _recorded(sidecar), FIRST_FETCH
    if target.exists():
        try:
            digest = _accept(target, url, name, expected, size, origin, sidecar)
            log.info("%s: in the download cache, not downloading again", target)
            if origin == FIRST_FETCH and not expected:  # cached before hashes were recorded
                _record_first(sidecar, digest, name, url)
            _note(first_use, name, url, digest, target, origin)
            return target
        except (ChecksumError, ContentError) as err:
            log.warning("%s: cached copy refused (%s); downloading again", target, err)
            target.unlink()
    part = target.with_name(target.name + ".part")
    limits = Limits(timeout_s, deadline_s, min_rate, rate_window_s)
    _download_with_retries(url, part, name, limits, retries, backoff_s)
    try:
        digest = _accept(part, url, name, expected, size, origin, sidecar)
    except ChecksumError:
        _discard(part)
        raise
    except ContentError as err:
        _discard(part)
        raise ContentError(
            f"{err}; that is the server's answer, so it was not retried, and nothing was kept"
        ) from err
    os.replace(part, target)
    _version_file(part).unlink(missing_ok=True)
    if origin == FIRST_FETCH and not expected:
        _record_first(sidecar, digest, name, url)
    _note(first_use, name, url, digest, target, origin)
    return target


def local_path(url: str) -> Path | None:
    """The file a `file://` URL or plain path names; None for a network URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(url).expanduser()
    return None


def forget(path: Path, cached: Path) -> str:
    """Delete a refused file from the download cache (`cached`), with its trust-on-first-use
    hash, so that the next fetch downloads again instead of trusting the same bad bytes;
    a user's own copy (`path` outside the cache) is never deleted. Says what was done."""
    if path.resolve() != cached.resolve():
        return "left the file in place"
    path.unlink(missing_ok=True)
    cached.with_name(cached.name + ".sha256").unlink(missing_ok=True)
    return "deleted it from the download cache, so the next run downloads it again"


def verify(path: Path, sha256: str, size: int, url: str = "") -> str:
    """Check size and checksum where known; return the file's sha256."""
    where = f"{url}: {path}" if url and url != str(path) else str(path)
    actual_size = path.stat().st_size
    if size and actual_size != size:
        raise ChecksumError(f"{where}: {actual_size} bytes, expected {size}")
    digest = sha256_file(path)
    if sha256 and digest != sha256.lower():
        raise ChecksumError(f"{where}: sha256 {digest} does not match the expected {sha256}")
    return digest


# --------------------------------------------------------------------------- verification


def _accept(
    path: Path, url: str, name: str, expected: str, size: int, origin: str, sidecar: Path
) -> str:
    """Sniff, then size and checksum (pinned or recorded at first fetch); return the sha256."""
    problem, _ = sniff(path, name)
    if problem:
        raise ContentError(f"{url}: got {problem}")
    # a cut stream whose length the server gave as whole, or one cached before this check
    if expected_kind(name) == "gzip" and not _gzip_complete(path):
        raise ContentError(
            f"{url}: got a gzip stream that fails its CRC or ends before its trailer"
        )
    if expected and origin == FIRST_FETCH:
        digest = verify(path, "", size, url)
        if digest != expected:
            raise ChecksumError(
                f"{url}: the bytes changed since the first fetch: sha256 {digest}, first "
                f"fetch {expected} (recorded in {sidecar}). If the new file is right, delete "
                f"{sidecar} or set sources.<source>.sha256 to the new hash"
            )
        return digest
    return verify(path, expected, size, url)


def _recorded(sidecar: Path) -> str:
    """The sha256 recorded at first fetch ("" if none)."""
    if not sidecar.is_file():
        return ""
    digest = (sidecar.read_text().split() or [""])[0]
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ChecksumError(f"{sidecar}: not a sha256 recorded at first fetch; delete it")
    return digest


def _record_first(sidecar: Path, digest: str, name: str, url: str) -> None:
    """Trust on first use: every later copy of `name` must have this hash."""
    with atomic_path(sidecar) as tmp:
        tmp.write_text(f"{digest}  {name}\n")
    log.info("%s: no published checksum; sha256 %s recorded in %s", url, digest, sidecar)


def _note(first_use: bool, name: str, url: str, digest: str, path: Path, origin: str) -> None:
    entries = _FETCHED.get()
    if first_use and entries is not None:
        entries.append(
            {
                "name": name,
                "url": url,
                "sha256": digest,
                "size": path.stat().st_size,
                "hash": origin,
            }
        )


# --------------------------------------------------------------------------- transfer


def _download_with_retries(
    url: str, part: Path, name: str, limits: Limits, retries: int, backoff_s: float
) -> None:
    """`_download` until the bytes are complete, within the deadline; retried with backoff."""
    deadline = time.monotonic() + limits.deadline_s
    for attempt in range(retries + 1):
        try:
            length_known = _download(url, part, limits, deadline)
            problem, cut = sniff(part, name)
            if (
                not length_known
                and not problem
                and expected_kind(name) == "gzip"
                and not _gzip_complete(part)
            ):
                problem, cut = "a gzip stream that ends before its trailer", True
            if cut and not length_known:
                _discard(part)  # no length: resuming could not be checked
                raise TransientError(f"transfer ended early with no Content-Length: {problem}")
            return
        except TransientError as err:
            if isinstance(err, _StalePart):
                _discard(part)  # the next attempt starts from the first byte
            if attempt == retries:
                raise RuntimeError(
                    f"{url}: giving up after {retries + 1} attempts; last error: {err}"
                ) from err
            delay = backoff_s * 2**attempt
            if time.monotonic() + delay > deadline:
                raise DownloadTimeout(
                    f"{url}: not finished within the {limits.deadline_s:g} s deadline "
                    f"(deadline_s) after {attempt + 1} attempts; last error: {err}"
                ) from err
            log.warning(
                "%s: %s; retrying in %.1f s (resuming at %d bytes)",
                url,
                err,
                delay,
                part.stat().st_size if part.exists() else 0,
            )
            time.sleep(delay)


def _gzip_complete(path: Path) -> bool:
    """Whether every gzip member in `path` runs to its trailer (the whole file is read)."""
    try:
        check_stream(path, "gzip")
    except CorruptArchive:
        return False
    return True


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follows redirects, except from https to anything else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        if urlparse(req.full_url).scheme == "https" and urlparse(newurl).scheme != "https":
            raise urllib.error.HTTPError(
                req.full_url,
                code,
                f"redirect from https to {newurl} refused (a download "
                "that starts on https stays on https)",
                headers,
                fp,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_NoDowngrade)


class _StalePart(TransientError):
    """The `.part` cannot be continued (the server resumed elsewhere, or the file is shorter
    than it): it is discarded and the next attempt starts from the first byte."""


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _version_file(part).unlink(missing_ok=True)


def _version_file(part: Path) -> Path:
    """Where the version (ETag or Last-Modified) of the file a `.part` began from is kept."""
    return part.with_name(part.name + ".version")


def _download(url: str, part: Path, limits: Limits, deadline: float) -> bool:
    """One attempt; return whether the server said how long the file is (Content-Length,
    or a 416 for a complete `.part`)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    version = _version_file(part)
    if have:
        headers["Range"] = f"bytes={have}-"
        if version.is_file():  # a changed file comes whole (200), not as a splice
            headers["If-Range"] = version.read_text()
    request = urllib.request.Request(url, headers=headers)
    response = _open(request, have, limits, deadline)
    if response is None:
        return True
    with response:
        if have and response.status == 206:
            where = response.headers.get("Content-Range", "")
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", where.strip())
            if not match or int(match[1]) != have:
                raise _StalePart(
                    f"asked to resume at byte {have}, the server sent Content-Range "
                    f"{where!r}: the partial file is discarded"
                )
        elif have:
            have = 0  # the server ignored Range, or the file changed (If-Range): start over
        if not have:
            _save_version(version, response)
        total = response.headers.get("Content-Length")
        total_bytes = int(total) + have if total and total.isdigit() else None
        with (
            open(part, "ab" if have else "wb") as fh,
            tqdm(
                total=total_bytes, initial=have, unit="B", unit_scale=True, desc=part.name[:-5]
            ) as bar,
        ):
            _stream(url, response, fh, bar, limits, deadline)
    got = part.stat().st_size
    if total_bytes is not None and got < total_bytes:
        raise TransientError(f"connection closed at {got} of {total_bytes} bytes")
    return total_bytes is not None


def _save_version(version: Path, response: http.client.HTTPResponse) -> None:
    """Keep the file's version for a later resume's If-Range: a strong ETag, else its date."""
    etag = response.headers.get("ETag", "")
    value = etag if etag and not etag.startswith("W/") else response.headers.get("Last-Modified")
    if value:
        version.write_text(value)
    else:
        version.unlink(missing_ok=True)


def _open(
    request: urllib.request.Request, have: int, limits: Limits, deadline: float
) -> http.client.HTTPResponse | None:
    """The response, or None when a resumed `.part` is already complete (HTTP 416 with the
    file's length equal to the `.part`'s)."""
    url = request.full_url
    try:
        return _OPENER.open(request, timeout=_socket_timeout(limits, deadline, url))
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # range beyond the end: the .part is complete or longer
            length = (err.headers.get("Content-Range") or "").strip()
            if length == f"bytes */{have}":
                return None
            raise _StalePart(
                f"HTTP 416 to a resume at byte {have} (Content-Range {length!r}): the "
                "partial file is not a prefix of this file; discarded"
            ) from err
        if err.code >= 500 or err.code == 429:
            raise TransientError(f"HTTP {err.code}") from err
        raise RuntimeError(f"{url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, ssl.SSLCertVerificationError):
            raise RuntimeError(f"{url}: TLS certificate refused: {err.reason}") from err
        raise TransientError(f"cannot connect: {err.reason}") from err
    except http.client.HTTPException as err:  # BadStatusLine, RemoteDisconnected, LineTooLong
        raise TransientError(f"HTTP protocol error: {err!r}") from err
    except OSError as err:  # timeouts, resets, TLS errors
        raise TransientError(f"network error: {err!r}") from err


def _stream(
    url: str,
    response: http.client.HTTPResponse,
    fh: BinaryIO,
    bar: tqdm,
    limits: Limits,
    deadline: float,
) -> None:
    """Copy the body, enforcing the deadline and the minimum rate. `read1` returns what has
    arrived, so a server dripping bytes cannot hold one read open, and the socket timeout
    (at most the rate window) bounds a silent one: the deadline is overrun by at most one
    window."""
    window_start, window_bytes = time.monotonic(), 0
    while True:
        try:
            chunk = response.read1(CHUNK)
        except (http.client.HTTPException, OSError) as err:  # IncompleteRead, timeouts, resets
            raise TransientError(f"connection dropped: {err!r}") from err
        if not chunk:
            return
        fh.write(chunk)
        bar.update(len(chunk))
        now = time.monotonic()
        if now > deadline:
            fh.flush()
            raise DownloadTimeout(
                f"{url}: not finished within the {limits.deadline_s:g} s "
                f"deadline (deadline_s); the partial file is kept"
            )
        window_bytes += len(chunk)
        if now - window_start >= limits.rate_window_s:
            rate = window_bytes / (now - window_start)
            if rate < limits.min_rate:
                raise TransientError(
                    f"too slow: {rate:.0f} B/s over {now - window_start:.1f}"
                    f" s (minimum {limits.min_rate:g} B/s)"
                )
            window_start, window_bytes = now, 0


def _socket_timeout(limits: Limits, deadline: float, url: str) -> float:
    """One read may wait no longer than the rate window, the timeout or what is left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DownloadTimeout(
            f"{url}: not finished within the {limits.deadline_s:g} s deadline (deadline_s)"
        )
    return max(0.01, min(limits.timeout_s, limits.rate_window_s, left))
