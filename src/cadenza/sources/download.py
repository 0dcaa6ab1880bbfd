"""A careful downloader: stream, resume, retry, verify, then move into place.

* Streams in chunks with a progress bar.
* A partial download (`<name>.part`) is resumed with an HTTP Range request; a server that
  ignores Range gets a fresh download. A `.part` file is never used as an archive.
* Transient failures (connection drops, timeouts, HTTP 5xx / 429) are retried with
  exponential backoff; anything else (404, 403, ...) fails at once.
* The checksum is verified before the file is renamed into the cache; a mismatch deletes the
  bad bytes and stops the run.
* A file already in the cache with the right checksum is not downloaded again.
* `file://` URLs and plain local paths are verified and used in place (LPD users usually have
  the archive already).
"""

from __future__ import annotations

import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from cadenza.io import sha256_file

log = logging.getLogger(__name__)

USER_AGENT = "cadenza/0.1 (+https://github.com/cadenza-music/cadenza; research pipeline)"
CHUNK = 1 << 16


class ChecksumError(RuntimeError):
    """The downloaded bytes are not the published ones; nothing was used."""


class TransientError(RuntimeError):
    """A failure worth retrying: the network, not the request, went wrong."""


def fetch_file(url: str, cache: Path, name: str, sha256: str = "", size: int = 0, *,
               retries: int = 5, backoff_s: float = 1.0, timeout_s: float = 60.0) -> Path:
    """Return a verified local copy of `url` (a URL, `file://` URL or path)."""
    local = local_path(url)
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(f"{local}: no such file (given as the source location)")
        verify(local, sha256, size)
        return local
    target = cache / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        try:
            verify(target, sha256, size)
            log.info("%s: in the download cache, not downloading again", target)
            return target
        except ChecksumError:
            log.warning("%s: cached copy fails its checksum; downloading again", target)
            target.unlink()
    part = target.with_name(target.name + ".part")
    for attempt in range(retries + 1):
        try:
            _download(url, part, timeout_s)
            break
        except TransientError as err:
            if attempt == retries:
                raise RuntimeError(f"{url}: giving up after {retries + 1} attempts: {err}"
                                   ) from err
            delay = backoff_s * 2**attempt
            log.warning("%s: %s; retrying in %.1f s (resuming at %d bytes)", url, err, delay,
                        part.stat().st_size if part.exists() else 0)
            time.sleep(delay)
    try:
        verify(part, sha256, size)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, target)
    return target


def local_path(url: str) -> Path | None:
    """The file a `file://` URL or plain path names; None for a network URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(url).expanduser()
    return None


def verify(path: Path, sha256: str, size: int) -> str:
    """Check size and checksum where known; return the file's sha256."""
    actual_size = path.stat().st_size
    if size and actual_size != size:
        raise ChecksumError(f"{path}: {actual_size} bytes, expected {size}")
    digest = sha256_file(path)
    if sha256 and digest != sha256.lower():
        raise ChecksumError(f"{path}: sha256 {digest} does not match the expected {sha256}")
    return digest


def _download(url: str, part: Path, timeout_s: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # range beyond the end: the .part is complete or bigger
            return
        if err.code >= 500 or err.code == 429:
            raise TransientError(f"HTTP {err.code}") from err
        raise RuntimeError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise TransientError(str(err)) from err
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range: start over
        mode = "ab" if have else "wb"
        total = response.headers.get("Content-Length")
        total_bytes = int(total) + have if total is not None else None
        with open(part, mode) as fh, tqdm(total=total_bytes, initial=have, unit="B",
                                           unit_scale=True, desc=part.name[:-5]) as bar:
            try:
                while chunk := response.read(CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (http.client.IncompleteRead, TimeoutError, ConnectionError) as err:
                raise TransientError(f"connection dropped: {err!r}") from err
        if total_bytes is not None and part.stat().st_size < total_bytes:
            raise TransientError(f"connection closed at {part.stat().st_size} of "
                                 f"{total_bytes} bytes")
