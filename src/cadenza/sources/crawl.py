"""A polite crawler for piano-midi.de, which offers no bulk archive.

From the index page (`midis.htm`) it follows the composer pages on the same host, then the
`.mid` links on each. It waits `delay_s` between network requests (never for a local
`file://` or path index: nobody's server is loaded), sends its own User-Agent, and keeps
every page and file in the download cache, so a re-run fetches nothing. What was
fetched is pinned in the manifest (URL, path, size, sha256), because the site changes.

Links are not trusted: each is decoded, normalised and must stay on the index page's site
(scheme and host) and under its folder, and the cache file it names must lie inside the
cache. A link that fails (`..`, `%2e%2e`, `%2f`, backslashes, absolute paths elsewhere,
other hosts) is skipped with a warning that names it.
"""

from __future__ import annotations

import logging
import posixpath
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlparse

from tqdm import tqdm

from cadenza.io import sha256_file
from cadenza.sources.download import fetch_file, local_path

log = logging.getLogger(__name__)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links += [v for k, v in attrs if k == "href" and v]


def links(html: str, base: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return [urljoin(base, href) for href in parser.links]


class PoliteFetcher:
    """`fetch_file` with a pause before every request that really goes to the network."""

    def __init__(self, cache: Path, delay_s: float) -> None:
        self.cache, self.delay_s, self._last = cache, delay_s, 0.0

    def get(self, url: str) -> Path:
        name = _cache_name(url)
        if local_path(url) is None:
            cache = self.cache.resolve()
            if not (cache / name).resolve().is_relative_to(cache):
                raise ValueError(
                    f"{url}: its cache file {name} would lie outside the "
                    f"download cache {self.cache}; refused"
                )
            if not (self.cache / name).exists():
                wait = self._last + self.delay_s - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self._last = time.monotonic()
        return fetch_file(url, self.cache, name, first_use=False)  # the site changes


def crawl_piano_midi_de(
    index_url: str, out: Path, cache: Path, delay_s: float, limit: int
) -> list[dict]:
    fetcher = PoliteFetcher(cache, delay_s)
    index = fetcher.get(index_url).read_text(errors="replace")
    pages = sorted(
        {u for u in confined(links(index, index_url), index_url, (".htm",)) if u != index_url}
    )
    midis: list[str] = []
    for page in tqdm(pages, desc="crawl piano-midi.de pages", unit="page"):
        html = fetcher.get(page).read_text(errors="replace")
        midis += confined(links(html, page), index_url, (".mid", ".midi"))
    midis = sorted(dict.fromkeys(midis))
    if limit:
        midis = midis[:limit]
    rows = []
    for url in tqdm(midis, desc="fetch piano-midi.de files", unit="file"):
        path = PurePosixPath(unquote(urlparse(url).path))
        composer = path.parent.name
        rel = Path("midis") / composer / path.name
        if not (out / rel).resolve().is_relative_to(out.resolve()):
            raise ValueError(f"{url}: would be written outside {out} as {rel}; refused")
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fetcher.get(url), out / rel)
        rows.append(
            {
                "piece_id": f"{composer}/{path.stem}",
                "title": path.stem,
                "composer": composer,
                "format": "midi",
                "path": str(rel),
                "source_path": url,
                "size": (out / rel).stat().st_size,
                "sha256": sha256_file(out / rel),
                "status": "ok",
                "reason": "",
            }
        )
    log.info("piano-midi.de: %d composer pages, %d files", len(pages), len(rows))
    return rows


def confined(urls: list[str], start: str, suffixes: tuple[str, ...]) -> list[str]:
    """The links ending in `suffixes` that the crawl may follow; the others are skipped with
    a warning naming them (a crafted link must not reach another site or another folder)."""
    kept = []
    for url in urls:
        if not urlparse(url).path.lower().endswith(suffixes):
            continue
        why = outside(url, start)
        if why:
            log.warning("%s: link skipped: %s", url, why)
        else:
            kept.append(url)
    return kept


def outside(url: str, start: str) -> str:
    """Why `url` may not be followed from a crawl that began at `start` ("" if it may): it
    must be on the same site (scheme and host) and, once decoded and normalised, under the
    start page's folder, with no dot segments, encoded slashes or backslashes."""
    link, base = urlparse(url), urlparse(start)
    if (link.scheme, link.netloc) != (base.scheme, base.netloc):
        return f"on another site than {base.scheme}://{base.netloc}"
    if re.search(r"%2f|%5c|\\", link.path, flags=re.IGNORECASE):
        return "an encoded slash or a backslash in the path"
    path = unquote(link.path)
    if "\0" in path or any(part in (".", "..") for part in path.split("/")):
        return "a '.' or '..' segment or a NUL in the path once decoded"
    folder = posixpath.dirname(base.path)
    folder = folder.rstrip("/") + "/" if folder else ""  # "" for a relative `midis.htm`
    if not posixpath.normpath(path).startswith(folder):
        return f"outside the start page's folder {folder}"
    return ""


def _cache_name(url: str) -> str:
    parsed = urlparse(url)
    return str(Path(parsed.netloc) / unquote(parsed.path).lstrip("/"))
