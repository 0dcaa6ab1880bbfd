"""From a source's download to a manifest: one function per layout, one row per piece.

A manifest row says where a piece is (`path`, relative to `data/raw/<source>/`), how prepare
must read it (`format`: midi, npz or bl_pickle, with `member` for pieces inside a container),
its official `split` where the publisher gives one, and what is known about it (title,
composer, year). Rows with `status` other than "ok" carry the reason they were rejected.

`limit` is applied at fetch time: only the first N pieces, in an order that does not depend
on the machine (the publisher's CSV order for MAESTRO, tree order of paths elsewhere), are
extracted or copied, so a quick run on a full-size archive writes N pieces, not the corpus.
Local folders (`midi_dir`, a piano-midi.de copy) are copied under `data/raw/<source>/` with
a sha256 per file: DVC tracks that copy, not the folder outside the project.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import shutil
import urllib.error
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pandas as pd

from cadenza.config import SourceParams
from cadenza.io import sha256_file
from cadenza.sources.crawl import crawl_piano_midi_de
from cadenza.sources.download import fetch_file, local_path
from cadenza.sources.extract import Select, list_members, safe_extract
from cadenza.sources.music21_convert import convert_all
from cadenza.sources.registry import Source

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}
MIDI_SUFFIXES = (".mid", ".midi")  # compared case-insensitively: .MID, .Midi
PIANO_MIDI_DE_COPY = "a local copy of piano-midi.de (a folder holding midis/<Composer>/*.mid " \
    "and metadata.csv)"

# picks the archive entries worth extracting under `limit`: (archive, files folder, params)
Chooser = Callable[[Path, Path, SourceParams], Select]


def download(source: Source, params: SourceParams, cache: Path) -> Path:
    """The source's (single) file, from the params' or environment's mirror, else upstream."""
    (remote,) = source.files
    url = params.url or _env_mirror(source) or remote.url
    if not url:
        raise RuntimeError(
            f"{source.name} has no stable public address; download {remote.name} yourself "
            f"and set sources.{source.name}.url (a path or URL) or "
            f"CADENZA_MIRROR_{source.name.upper()}")
    # a mirror or local copy must hold the published bytes, unless the params say otherwise
    sha256, size = (params.sha256, 0) if params.sha256 else (remote.sha256, remote.size)
    return fetch_file(url, cache, remote.name, sha256, size, retries=params.retries)


def _env_mirror(source: Source) -> str:
    return os.environ.get(f"CADENZA_MIRROR_{source.name.upper()}", "")


def _unpack(source: Source, params: SourceParams, cache: Path, out: Path,
            choose: Chooser | None = None) -> Path:
    """Download and extract; under `limit`, only the entries `choose` picks are written."""
    archive = download(source, params, cache)
    files = out / "files"
    select = choose(archive, files, params) if choose is not None and params.limit else None
    safe_extract(archive, files, _max_bytes(params), select)
    return files


def _max_bytes(params: SourceParams) -> int:
    return params.max_extract_mb * 1_000_000


def _tree_key(rel: str | PurePosixPath) -> tuple[str, ...]:
    """Tree order of a relative path, the same on every machine and file system: a folder's
    files stay together ("a/x" before "a-b/x"), which plain string order does not promise."""
    return PurePosixPath(rel).parts


def _first_entries(archive: Path, keep: Callable[[str], bool], limit: int) -> Select:
    """The first `limit` entries `keep` accepts, in tree order (the unlimited run's order)."""
    names = sorted((str(PurePosixPath(n)) for n in list_members(archive) if keep(n)),
                   key=_tree_key)
    wanted = set(names[:limit])
    return lambda name: str(PurePosixPath(name)) in wanted


def _under(rel: str, subset: str) -> bool:
    return not subset or rel == subset or rel.startswith(subset.rstrip("/") + "/")


def _limit(rows: list[dict], params: SourceParams) -> list[dict]:
    return rows[: params.limit] if params.limit else rows


# --------------------------------------------------------------------------- layouts


def music21_chorales(source: Source, params: SourceParams, cache: Path, out: Path
                     ) -> list[dict]:
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
    rows = [{"piece_id": str(Path(r.midi_filename).with_suffix("")),
             "title": r.canonical_title, "composer": r.canonical_composer, "year": r.year,
             "split": SPLIT_NAMES[r.split], "format": "midi",
             "path": str(top / r.midi_filename), "source_path": r.midi_filename,
             "status": "ok", "reason": ""}
            for r in table.itertuples()]
    return _limit(rows, params)


def _maestro_entries(archive: Path, files: Path, params: SourceParams) -> Select:
    """The CSV and the first `limit` performances it lists (CSV order), nothing else: the
    CSV is read from the archive first (extracted alone, with the same checks)."""
    (csv,) = [n for n in list_members(archive)
              if re.fullmatch(r"[^/]+/maestro-v[^/]*\.csv", str(PurePosixPath(n)))]
    safe_extract(archive, files, _max_bytes(params), lambda name: name == csv)
    top = PurePosixPath(csv).parts[0]
    table = pd.read_csv(files / csv, nrows=params.limit)
    wanted = {str(PurePosixPath(csv))} | {f"{top}/{m}" for m in table.midi_filename}
    return lambda name: str(PurePosixPath(name)) in wanted


def lpd(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    files = _unpack(source, params, cache, out, _lpd_entries)
    rows = []
    for path in sorted(files.rglob("*.npz"), key=lambda p: _tree_key(p.relative_to(files))):
        rel = path.relative_to(files)
        if _under(str(rel), params.subset):
            rows.append({"piece_id": f"{path.parent.name}/{path.stem}", "title": path.stem,
                         "format": "npz", "path": str(path.relative_to(out)),
                         "source_path": str(rel), "status": "ok", "reason": ""})
    return _limit(rows, params)


def _lpd_entries(archive: Path, files: Path, params: SourceParams) -> Select:
    """The first `limit` rolls under `subset`, listed in a first pass over the tarball."""
    return _first_entries(archive, lambda name: name.endswith(".npz") and _under(
        str(PurePosixPath(name)), params.subset), params.limit)


def piano_midi_de(source: Source, params: SourceParams, cache: Path, out: Path
                  ) -> list[dict]:
    """Crawled from the site (or a copy of its pages), or read from a local copy of the
    published corpus, which needs no crawl and no politeness delay."""
    location = params.url or _env_mirror(source) or source.files[0].url
    local = local_path(location)
    if local is not None and local.is_dir():
        return _piano_midi_de_copy(local, out, params, f"sources.{source.name}.url")
    if local is not None and not local.is_file():
        raise FileNotFoundError(
            f"sources.{source.name}.url: {_shown(local)}: no such file or folder; expected "
            f"{PIANO_MIDI_DE_COPY}, or the site's index page midis.htm (URL or path)")
    return crawl_piano_midi_de(location, out, cache / source.name, params.delay_s,
                               params.limit)


def _piano_midi_de_copy(folder: Path, out: Path, params: SourceParams, key: str
                        ) -> list[dict]:
    """`midis/<Composer>/*.mid` in tree order, described by `metadata.csv` where it has a
    row for the file. Its `midi` column is matched to the real files ignoring case (in the
    August 2021 copy four Schubert rows say D850 where the files say d850). The piece id
    lower-cases the composer folder, as the site's URLs do, so a piece has the same id (and
    hash split) whether it was crawled or copied."""
    if not (folder / "midis").is_dir():
        raise FileNotFoundError(f"{key}: {_shown(folder)}: no midis/ folder in it; expected "
                                f"{PIANO_MIDI_DE_COPY}")
    rels = [f"midis/{rel}" for rel in _midi_files(folder / "midis")]
    if not rels:
        raise FileNotFoundError(f"{key}: {_shown(folder)}: no .mid files under midis/; "
                                f"expected {PIANO_MIDI_DE_COPY}")
    meta = _piano_midi_de_metadata(folder, rels)
    rows = []
    for rel in rels[: params.limit or None]:
        path = PurePosixPath(rel)
        info = meta.get(rel, {})
        ident = PurePosixPath(path.parts[1].lower(), *path.parts[2:]).with_suffix("")
        folder_composer = path.parts[1] if len(path.parts) > 2 else ""
        rows.append({"piece_id": str(ident), "title": info.get("title") or path.stem,
                     "composer": info.get("composer") or folder_composer,
                     "year": info.get("year", ""), "format": "midi", "path": rel,
                     "source_path": rel, **_copy_checksummed(folder / rel, out / rel),
                     "status": "ok", "reason": ""})
    log.info("piano-midi.de: %d files read from the local copy %s", len(rows), folder)
    return rows


def _piano_midi_de_metadata(folder: Path, rels: list[str]) -> dict[str, dict[str, str]]:
    """metadata.csv rows by the real file's relative path; {} (titles from file names, as
    the crawl does) where the copy has no metadata.csv."""
    csv = folder / "metadata.csv"
    if not csv.is_file():
        log.warning("%s: no metadata.csv; titles and composers come from the file paths", folder)
        return {}
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    if "midi" not in table.columns:
        raise ValueError(f"{csv}: no 'midi' column (the file of each row); expected the "
                         "published columns composer, title, year, midi, duration")
    exact, folded = set(rels), {rel.lower(): rel for rel in rels}
    meta, missing = {}, []
    for row in table.to_dict("records"):
        name = str(PurePosixPath(row["midi"].strip().replace("\\", "/")))
        rel = name if name in exact else folded.get(name.lower())
        if rel is None:
            missing.append(name)
            continue
        meta.setdefault(rel, {k: str(row.get(k, "")).strip()
                              for k in ("title", "composer", "year")})
    if missing:
        log.warning("%s: %d rows name no file of the copy, e.g. %s", csv, len(missing),
                    missing[0])
    return meta


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
    for path in sorted(files.rglob("*.krn"), key=lambda p: _tree_key(p.relative_to(files))):
        rel = _essen_rel(PurePosixPath(path.relative_to(files).as_posix()))
        if _under(str(rel), params.subset):
            jobs.append((str(rel.with_suffix("")), str(path)))
    rows = convert_all(_limit(jobs, params), out, params.workers, "fetch essen")
    for row in rows:
        row["source_path"] = str(Path(row["source_path"]).relative_to(out))
    return rows


def _essen_entries(archive: Path, files: Path, params: SourceParams) -> Select:
    """The first `limit` kern files under `subset` (a collection path, as in the manifest)."""
    return _first_entries(archive, lambda name: name.endswith(".krn") and _under(
        str(_essen_rel(PurePosixPath(name))), params.subset), params.limit)


def _essen_rel(rel: PurePosixPath) -> PurePosixPath:
    """A kern file's path in the collection, without the GitHub zip's top folder."""
    top = len(rel.parts) > 1 and rel.parts[0].startswith("essen-folksong-collection")
    return PurePosixPath(*rel.parts[1:]) if top else rel


def _essen_abc(params: SourceParams, out: Path) -> list[dict]:
    """One job per tune (`path#X`), so `limit` applies before the slow conversion."""
    from music21 import corpus

    paths = sorted(p for p in corpus.getPaths(fileExtensions=["abc"])
                   if "essenFolksong" in str(p))
    jobs = []
    for path in paths:
        text = Path(path).read_text(encoding="latin-1")
        for number in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE):
            jobs.append((f"essenFolksong/{Path(path).stem}/{int(number):04d}",
                         f"{path}#{number}"))
    return convert_all(_limit(jobs, params), out, params.workers, "fetch essen (ABC)")


def bl_pickle(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    """The B-L pickles keep their fixed train / valid / test split; each piece is a row."""
    local = download(source, params, cache)
    target = out / "files" / source.files[0].name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, target)
    with open(target, "rb") as fh:
        data = pickle.load(fh, encoding="latin1")  # noqa: S301 - the published format
    rows = []
    for split in ("train", "valid", "test"):
        for index in range(len(data[split])):
            rows.append({"piece_id": f"{split}/{index:04d}", "title": f"{split} {index}",
                         "split": split, "format": "bl_pickle",
                         "path": str(target.relative_to(out)), "member": index,
                         "source_path": source.files[0].name, "status": "ok", "reason": ""})
    return _limit(rows, params)


def midi_dir(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    """Your own MIDI: every .mid/.midi under a local folder, in tree order, copied to
    `files/<relative path>` with its sha256 and size, described by an optional CSV.

    The folder is named by the params, not the registry, and errors name `sources.<name>`,
    so a second own folder is only a second registry entry with this layout.
    """
    key = f"sources.{source.name}"
    folder = _local_folder(params.url, f"{key}.url",
                           "a folder of .mid/.midi files (searched recursively)")
    rels = _midi_files(folder)
    if not rels:
        raise FileNotFoundError(
            f"{key}.url: {_shown(folder)}: no .mid/.midi files in it or its subfolders "
            "(hidden files and folders are skipped); expected a folder of MIDI files")
    meta = _midi_dir_metadata(folder, rels, params, key)
    rows: list[dict] = []
    first: dict[str, str] = {}  # piece id -> the file that has it
    for rel in rels[: params.limit or None]:
        piece_id = str(PurePosixPath(rel).with_suffix(""))
        info = meta.get(rel, {})
        row = {"piece_id": piece_id, "title": info.get("title") or PurePosixPath(rel).stem,
               "composer": info.get("composer", ""), "year": info.get("year", ""),
               "split": info.get("split", ""), "format": "midi", "path": f"files/{rel}",
               "source_path": rel, "status": "ok", "reason": ""}
        if piece_id in first:  # a.mid next to a.MIDI: one id must name one piece
            row.update(path="", status="rejected",
                       reason=f"same piece id as {first[piece_id]} (only the suffix differs)")
        else:
            first[piece_id] = rel
            row.update(_copy_checksummed(folder / rel, out / "files" / rel))
        rows.append(row)
    log.info("%s: %d MIDI files from %s", source.name, len(rows), folder)
    return rows


def _local_folder(url: str, key: str, expected: str) -> Path:
    """The folder a path or file:// URL names, or an error saying what was expected."""
    if not url:
        raise ValueError(f"{key}: not set; expected {expected} (a path or file:// URL)")
    path = local_path(url)
    if path is None:
        raise ValueError(f"{key}: {url}: not a local path; expected {expected} "
                         "(a path or file:// URL)")
    if not path.is_dir():
        what = "not a folder" if path.exists() else "no such folder"
        raise FileNotFoundError(f"{key}: {_shown(path)}: {what}; expected {expected}")
    return path


def _shown(path: Path) -> str:
    """A path as given, and where a relative one was looked for (the project root)."""
    return str(path) if path.is_absolute() else f"{path} (in {Path.cwd()})"


def _midi_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the MIDI files under `folder`, any suffix case, tree order.

    Hidden files and folders are skipped (`.git`, macOS `._x.mid` resource forks: not MIDI);
    folder symlinks are not followed, so a link loop cannot make the walk endless.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath, name)
            if (not name.startswith(".") and name.lower().endswith(MIDI_SUFFIXES)
                    and path.is_file()):
                found.append(PurePosixPath(path.relative_to(folder).as_posix()))
    return [str(rel) for rel in sorted(found, key=_tree_key)]


def _midi_dir_metadata(folder: Path, rels: list[str], params: SourceParams, key: str
                       ) -> dict[str, dict[str, str]]:
    """Title, composer, year and split per file from `params.metadata`; {} without one.

    Fields map to the CSV's columns by `params.columns`, else to a column of their own name
    where the CSV has one. A row's file is its path relative to the folder, or its bare file
    name where that is unique. A split is train/valid/validation/test or empty (the hash
    split of prepare); anything else is an error, since a typo must not move a piece.
    """
    if not params.metadata:
        if params.columns:
            raise ValueError(f"{key}.columns: given without {key}.metadata (the CSV they "
                             "name columns of)")
        return {}
    csv = Path(params.metadata).expanduser()
    csv = csv if csv.is_absolute() else folder / csv
    if not csv.is_file():
        raise FileNotFoundError(f"{key}.metadata: {_shown(csv)}: no such file; expected a "
                                f"CSV describing the files (relative to {key}.url, or absolute)")
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table.columns = [str(c).strip() for c in table.columns]
    for name, column in params.columns.items():
        if column not in table.columns:
            raise ValueError(f"{key}.columns.{name}: no column {column!r} in {csv} (its "
                             f"columns: {', '.join(table.columns)})")
    used = {name: params.columns.get(name, name) for name in SourceParams.METADATA_FIELDS}
    used = {name: column for name, column in used.items() if column in table.columns}
    if "file" not in used:
        raise ValueError(f"{key}.metadata: {csv} has no column 'file' naming each row's MIDI "
                         f"file; name the column that does with {key}.columns.file")
    exact = set(rels)
    by_name: dict[str, list[str]] = {}
    for rel in rels:
        by_name.setdefault(PurePosixPath(rel).name, []).append(rel)
    meta: dict[str, dict[str, str]] = {}
    unmatched = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        given = row[used["file"]].strip().replace("\\", "/")
        file = str(PurePosixPath(given)) if given else ""
        rel = file if file in exact else None
        if rel is None and len(by_name.get(file, [])) == 1:
            rel = by_name[file][0]
        if rel is None:
            unmatched.append(given)
            continue
        if rel in meta:
            raise ValueError(f"{key}.metadata: {csv}: line {line}: a second row for {rel}")
        info = {field: str(row[column]).strip() for field, column in used.items()
                if field != "file"}
        if "split" in info:
            value = info["split"].lower()
            if value and value not in SPLIT_NAMES:
                raise ValueError(
                    f"{key}.metadata: {csv}: line {line}: split {info['split']!r} for {rel} "
                    "is not one of train, valid, validation, test (empty: the hash split)")
            info["split"] = SPLIT_NAMES.get(value, "")
        meta[rel] = info
    if unmatched:
        log.warning("%s: %d rows name no MIDI file of %s (or an ambiguous bare name), e.g. %r",
                    csv, len(unmatched), folder, unmatched[0])
    return meta


def _copy_checksummed(src: Path, dst: Path) -> dict:
    """Copy a file into the fetch folder; its size and sha256 pin what was fetched."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return {"size": dst.stat().st_size, "sha256": sha256_file(dst)}


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


LAYOUTS = {"music21_chorales": music21_chorales, "maestro": maestro, "lpd": lpd,
           "piano_midi_de": piano_midi_de, "essen_kern": essen_kern, "bl_pickle": bl_pickle,
           "midi_dir": midi_dir}
