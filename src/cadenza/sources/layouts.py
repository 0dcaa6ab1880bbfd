"""From a source's download to a manifest: one function per layout, one row per piece.

A manifest row says where a piece is (`path`, relative to `data/raw/<source>/`), how prepare
must read it (`format`, a `cadenza.sources.registry.Format`, with `member` for pieces inside a
container), its official `split` where the publisher gives one, and what is known about it
(title, composer, year). Rows with `status` other than "ok" carry the reason they were
rejected. `LAYOUTS` is the one list of layouts: each with the formats its rows may name.

`limit` is applied at fetch time: only the first N pieces, in an order that does not depend
on the machine (the publisher's CSV order for MAESTRO, tree order of paths elsewhere), are
extracted or copied, so a quick run on a full-size archive writes N pieces, not the corpus.
Local folders (`midi_dir`, a piano-midi.de copy) are read by `cadenza.sources.folders`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

import pandas as pd

from cadenza.config import SourceParams
from cadenza.sources.bl_pickle import BLPickleError, load
from cadenza.sources.crawl import crawl_piano_midi_de
from cadenza.sources.download import fetch_file, forget, local_path
from cadenza.sources.extract import (
    CorruptArchive,
    Select,
    extract_cap,
    list_members,
    safe_extract,
)
from cadenza.sources.folders import (
    PIANO_MIDI_DE_COPY,
    SPLIT_NAMES,
    midi_dir,
    piano_midi_de_copy,
    shown,
    tree_key,
    under,
)
from cadenza.sources.music21_convert import convert_all
from cadenza.sources.registry import Format, Source

log = logging.getLogger(__name__)

T = TypeVar("T")  # a manifest row or a conversion job, cut by `limit`


# picks the archive entries worth extracting under `limit`: (archive, files folder, params,
# the extraction cap in bytes)
Chooser = Callable[[Path, Path, SourceParams, int], Select]


def download(source: Source, params: SourceParams, cache: Path) -> Path:
    """The source's (single) file, from the params' or environment's mirror, else upstream."""
    (remote,) = source.files
    url = _url(source, params)
    if not url:
        raise RuntimeError(
            f"{source.name} has no stable public address; download {remote.name} yourself "
            f"and set sources.{source.name}.url (a path or URL) or "
            f"CADENZA_MIRROR_{source.name.upper()}"
        )
    # a mirror or local copy must hold the published bytes, unless the params say otherwise
    sha256, size = (params.sha256, 0) if params.sha256 else (remote.sha256, remote.size)
    return fetch_file(url, cache, remote.name, sha256, size, retries=params.retries)


def _url(source: Source, params: SourceParams) -> str:
    """Where the source's first file comes from: the params' mirror, the environment's, else
    upstream (empty where upstream has no stable address)."""
    return params.url or _env_mirror(source) or source.files[0].url


def _env_mirror(source: Source) -> str:
    return os.environ.get(f"CADENZA_MIRROR_{source.name.upper()}", "")


def _unpack(
    source: Source, params: SourceParams, cache: Path, out: Path, choose: Chooser | None = None
) -> Path:
    """Download and extract; under `limit`, only the entries `choose` picks are written.

    A damaged archive is dropped from the download cache (see `forget`): kept, every later
    run would fail on it without asking the server again."""
    archive = download(source, params, cache)
    files = out / "files"
    # `max_extract_mb` when set, else from what the registry knows the file unpacks to, else
    # from the archive's size
    max_bytes = extract_cap(archive, params.max_extract_mb, source.files[0].unpacked)
    param = f"sources.{source.name}.max_extract_mb"
    try:
        select = (
            choose(archive, files, params, max_bytes)
            if choose is not None and params.limit
            else None
        )
        safe_extract(archive, files, max_bytes, select, param=param)
    except CorruptArchive as err:
        done = forget(archive, cache / source.files[0].name)
        raise CorruptArchive(f"{_url(source, params)}: {err}; {done}") from err
    return files


def _first_entries(archive: Path, keep: Callable[[str], bool], limit: int) -> Select:
    """The first `limit` entries `keep` accepts, in tree order (the unlimited run's order)."""
    names = sorted((str(PurePosixPath(n)) for n in list_members(archive) if keep(n)), key=tree_key)
    wanted = set(names[:limit])
    return lambda name: str(PurePosixPath(name)) in wanted


def _limit(rows: list[T], params: SourceParams) -> list[T]:
    return rows[: params.limit] if params.limit else rows


# --------------------------------------------------------------------------- layouts


def music21_chorales(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    from music21 import corpus

    names = sorted(set(corpus.chorales.Iterator(returnType="filename")), key=_natural_key)
    jobs = [(Path(n).name, f"music21:{n}") for n in names]
    rows = convert_all(_limit(jobs, params), out, params.workers, "fetch bach_chorales")
    for row in rows:
        row["bwv"] = row["piece_id"].removeprefix("bwv")
    return rows


def maestro(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    files = _unpack(source, params, cache, out, _maestro_entries)
    (csv,) = sorted(files.glob("*/maestro-v*.csv"))
    table = pd.read_csv(csv)
    top = csv.parent.relative_to(out)
    rows = [
        {
            "piece_id": str(Path(r.midi_filename).with_suffix("")),
            "title": r.canonical_title,
            "composer": r.canonical_composer,
            "year": r.year,
            "split": SPLIT_NAMES[r.split],
            "format": "midi",
            "path": str(top / r.midi_filename),
            "source_path": r.midi_filename,
            "status": "ok",
            "reason": "",
        }
        for r in table.itertuples()
    ]
    return _limit(rows, params)


def _maestro_entries(archive: Path, files: Path, params: SourceParams, max_bytes: int) -> Select:
    """The CSV and the first `limit` performances it lists (CSV order), nothing else: the
    CSV is read from the archive first (extracted alone, with the same checks)."""
    (csv,) = [
        n
        for n in list_members(archive)
        if re.fullmatch(r"[^/]+/maestro-v[^/]*\.csv", str(PurePosixPath(n)))
    ]
    safe_extract(archive, files, max_bytes, lambda name: name == csv)
    top = PurePosixPath(csv).parts[0]
    table = pd.read_csv(files / csv, nrows=params.limit)
    wanted = {str(PurePosixPath(csv))} | {f"{top}/{m}" for m in table.midi_filename}
    return lambda name: str(PurePosixPath(name)) in wanted


def lpd(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    files = _unpack(source, params, cache, out, _lpd_entries)
    rows = []
    for path in sorted(files.rglob("*.npz"), key=lambda p: tree_key(p.relative_to(files))):
        rel = path.relative_to(files)
        if under(str(rel), params.subset):
            rows.append(
                {
                    "piece_id": f"{path.parent.name}/{path.stem}",
                    "title": path.stem,
                    "format": "npz",
                    "path": str(path.relative_to(out)),
                    "source_path": str(rel),
                    "status": "ok",
                    "reason": "",
                }
            )
    return _limit(rows, params)


def _lpd_entries(archive: Path, files: Path, params: SourceParams, max_bytes: int) -> Select:
    """The first `limit` rolls under `subset`, listed in a first pass over the tarball."""
    return _first_entries(
        archive,
        lambda name: name.endswith(".npz") and under(str(PurePosixPath(name)), params.subset),
        params.limit,
    )


def piano_midi_de(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    """Crawled from the site (or a copy of its pages), or read from a local copy of the
    published corpus, which needs no crawl and no politeness delay."""
    location = _url(source, params)
    local = local_path(location)
    if local is not None and local.is_dir():
        return piano_midi_de_copy(local, out, params, f"sources.{source.name}.url")
    if local is not None and not local.is_file():
        raise FileNotFoundError(
            f"sources.{source.name}.url: {shown(local)}: no such file or folder; expected "
            f"{PIANO_MIDI_DE_COPY}, or the site's index page midis.htm (URL or path)"
        )
    return crawl_piano_midi_de(location, out, cache / source.name, params.delay_s, params.limit)


def essen_kern(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    """The kern edition; offline and with no mirror given, music21's shipped ABC copy."""
    try:
        files = _unpack(source, params, cache, out, _essen_entries)
    except (RuntimeError, urllib.error.URLError) as err:
        if params.url or _env_mirror(source):
            raise
        log.warning("essen: kern edition unreachable (%s); using music21's ABC copy", err)
        return _essen_abc(params, out)
    jobs = []
    for path in sorted(files.rglob("*.krn"), key=lambda p: tree_key(p.relative_to(files))):
        rel = _essen_rel(PurePosixPath(path.relative_to(files).as_posix()))
        if under(str(rel), params.subset):
            jobs.append((str(rel.with_suffix("")), str(path)))
    rows = convert_all(_limit(jobs, params), out, params.workers, "fetch essen")
    for row in rows:
        row["source_path"] = str(Path(row["source_path"]).relative_to(out))
    return rows


def _essen_entries(archive: Path, files: Path, params: SourceParams, max_bytes: int) -> Select:
    """The first `limit` kern files under `subset` (a collection path, as in the manifest)."""
    return _first_entries(
        archive,
        lambda name: (
            name.endswith(".krn") and under(str(_essen_rel(PurePosixPath(name))), params.subset)
        ),
        params.limit,
    )


def _essen_rel(rel: PurePosixPath) -> PurePosixPath:
    """A kern file's path in the collection, without the GitHub zip's top folder."""
    top = len(rel.parts) > 1 and rel.parts[0].startswith("essen-folksong-collection")
    return PurePosixPath(*rel.parts[1:]) if top else rel


def _essen_abc(params: SourceParams, out: Path) -> list[dict]:
    """One job per tune (`path#X`), so `limit` applies before the slow conversion."""
    from music21 import corpus

    paths = sorted(p for p in corpus.getPaths(fileExtensions=["abc"]) if "essenFolksong" in str(p))
    jobs = []
    for path in paths:
        text = Path(path).read_text(encoding="latin-1")
        for number in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE):
            jobs.append((f"essenFolksong/{Path(path).stem}/{int(number):04d}", f"{path}#{number}"))
    return convert_all(_limit(jobs, params), out, params.workers, "fetch essen (ABC)")


def bl_pickle(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    """The B-L pickles keep their fixed train / valid / test split; each piece is a row.

    The download is read with the no-code unpickler and checked against the published format
    before it is copied: a bad file is refused, never run, and dropped from the download
    cache (see `forget`), so the next fetch downloads again instead of trusting the same bytes.
    """
    local = download(source, params, cache)
    try:
        data = load(local)
    except BLPickleError as err:
        raise BLPickleError(
            f"{source.name}: {_url(source, params)} is not a Boulanger-Lewandowski pickle in "
            f"the published format; refused it and {forget(local, cache / source.files[0].name)}"
            f": {err}"
        ) from err
    target = out / "files" / source.files[0].name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, target)
    rows = []
    for split in ("train", "valid", "test"):
        for index in range(len(data[split])):
            rows.append(
                {
                    "piece_id": f"{split}/{index:04d}",
                    "title": f"{split} {index}",
                    "split": split,
                    "format": "bl_pickle",
                    "path": str(target.relative_to(out)),
                    "member": index,
                    "source_path": source.files[0].name,
                    "status": "ok",
                    "reason": "",
                }
            )
    return _limit(rows, params)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# the download (source, its params, the download cache, the output folder) -> manifest rows
ReadLayout = Callable[[Source, SourceParams, Path, Path], list[dict]]


@dataclass(frozen=True)
class Layout:
    """How a download becomes manifest rows, and the formats those rows may name.

    Why the formats are declared: prepare has a reader per format, so a layout that wrote a
    format nobody reads would fail only at prepare, file by file; declared, a test checks
    every format has its reader, and fetch refuses rows in an undeclared one.
    """

    rows: ReadLayout
    formats: tuple[Format, ...]


LAYOUTS: dict[str, Layout] = {
    "music21_chorales": Layout(music21_chorales, ("midi",)),
    "maestro": Layout(maestro, ("midi",)),
    "lpd": Layout(lpd, ("npz",)),
    "piano_midi_de": Layout(piano_midi_de, ("midi",)),
    "essen_kern": Layout(essen_kern, ("midi",)),
    "bl_pickle": Layout(bl_pickle, ("bl_pickle",)),
    "midi_dir": Layout(midi_dir, ("midi",)),
}


def layout_of(source: Source) -> Layout:
    """The registered layout `source` names; a ValueError listing the known ones if none."""
    if source.layout not in LAYOUTS:
        raise ValueError(
            f"source {source.name}: unknown layout {source.layout!r} (known: {', '.join(LAYOUTS)})"
        )
    return LAYOUTS[source.layout]
