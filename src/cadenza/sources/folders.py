"""Local folders of MIDI files: your own (`midi_dir`) and a copy of piano-midi.de.

Both are read in place and copied under `data/raw/<source>/` with a sha256 and size per file
(DVC tracks that copy, not the folder outside the project), in tree order, so `limit` takes
the same first N files on every machine. Titles, composers, years and splits come from a
metadata CSV; every error names the param and says what was expected.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path, PurePath, PurePosixPath

import pandas as pd

from cadenza.config import SourceParams
from cadenza.io import sha256_file
from cadenza.sources.download import local_path
from cadenza.sources.registry import Source

log = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}
MIDI_SUFFIXES = (".mid", ".midi")  # compared case-insensitively: .MID, .Midi
PIANO_MIDI_DE_COPY = (
    "a local copy of piano-midi.de (a folder holding midis/<Composer>/*.mid and metadata.csv)"
)


def under(rel: str, subset: str) -> bool:
    """Whether relative path `rel` is `subset` or inside it (`sources.<name>.subset`)."""
    return not subset or rel == subset or rel.startswith(subset.rstrip("/") + "/")


def tree_key(rel: str | PurePath) -> tuple[str, ...]:
    """Tree order of a relative path, the same on every machine and file system: a folder's
    files stay together ("a/x" before "a-b/x"), which plain string order does not promise."""
    return PurePosixPath(rel).parts


def piano_midi_de_copy(folder: Path, out: Path, params: SourceParams, key: str) -> list[dict]:
    """`midis/<Composer>/*.mid` in tree order, described by `metadata.csv` where it has a
    row for the file. Its `midi` column is matched to the real files ignoring case (in the
    August 2021 copy four Schubert rows say D850 where the files say d850). The piece id
    lower-cases the composer folder, as the site's URLs do, so a piece has the same id (and
    hash split) whether it was crawled or copied."""
    if not (folder / "midis").is_dir():
        raise FileNotFoundError(
            f"{key}: {shown(folder)}: no midis/ folder in it; expected {PIANO_MIDI_DE_COPY}"
        )
    files = {f"midis/{rel}": f"midis/{real}" for rel, real in _midi_files(folder / "midis").items()}
    rels = list(files)
    if not rels:
        raise FileNotFoundError(
            f"{key}: {shown(folder)}: no .mid files under midis/; expected {PIANO_MIDI_DE_COPY}"
        )
    meta = _piano_midi_de_metadata(folder, rels, key)
    rows = []
    for rel in rels[: params.limit or None]:
        path = PurePosixPath(rel)
        info = meta.get(rel, {})
        ident = PurePosixPath(path.parts[1].lower(), *path.parts[2:]).with_suffix("")
        folder_composer = path.parts[1] if len(path.parts) > 2 else ""
        rows.append(
            {
                "piece_id": str(ident),
                "title": info.get("title") or path.stem,
                "composer": info.get("composer") or folder_composer,
                "year": info.get("year", ""),
                "format": "midi",
                "path": rel,
                "source_path": rel,
                **_copy_checksummed(folder / files[rel], out / rel),
            }
        )
    log.info("piano-midi.de: %d files read from the local copy %s", len(rows), folder)
    return rows


def _piano_midi_de_metadata(folder: Path, rels: list[str], key: str) -> dict[str, dict[str, str]]:
    """metadata.csv rows by the real file's relative path; {} (titles from file names, as
    the crawl does) where the copy has no metadata.csv."""
    csv = folder / "metadata.csv"
    if not csv.is_file():
        log.warning("%s: no metadata.csv; titles and composers come from the file paths", folder)
        return {}
    table = _read_csv(csv, f"{key} (its metadata.csv)")
    if "midi" not in table.columns:
        raise ValueError(
            f"{csv}: no 'midi' column (the file of each row); expected the "
            "published columns composer, title, year, midi, duration"
        )
    exact, folded = set(rels), {rel.lower(): rel for rel in rels}
    meta: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    for row in table.to_dict("records"):
        name = str(PurePosixPath(row["midi"].strip().replace("\\", "/")))
        rel = name if name in exact else folded.get(name.lower())
        if rel is None:
            missing.append(name)
            continue
        meta.setdefault(
            rel, {k: str(row.get(k, "")).strip() for k in ("title", "composer", "year")}
        )
    if missing:
        log.warning("%s: %d rows name no file of the copy, e.g. %s", csv, len(missing), missing[0])
    return meta


def midi_dir(source: Source, params: SourceParams, cache: Path, out: Path) -> list[dict]:
    """Your own MIDI: every .mid/.midi under a local folder, in tree order, copied to
    `files/<relative path>` with its sha256 and size, described by an optional CSV.

    The folder is named by the params, not the registry, and errors name `sources.<name>`,
    so a second own folder is only a second registry entry with this layout.
    """
    key = f"sources.{source.name}"
    folder = _local_folder(
        params.url, f"{key}.url", "a folder of .mid/.midi files (searched recursively)"
    )
    files = {rel: real for rel, real in _midi_files(folder).items() if under(rel, params.subset)}
    rels = list(files)
    if not rels:
        within = f" under {key}.subset {params.subset!r}" if params.subset else ""
        raise FileNotFoundError(
            f"{key}.url: {shown(folder)}: no .mid/.midi files in it or its subfolders{within} "
            "(hidden files and folders are skipped); expected a folder of MIDI files"
        )
    meta = _midi_dir_metadata(folder, rels, params, key)
    rows: list[dict] = []
    first: dict[str, str] = {}  # piece id -> the file that has it
    for rel in rels[: params.limit or None]:
        piece_id = str(PurePosixPath(rel).with_suffix(""))
        info = meta.get(rel, {})
        row = {
            "piece_id": piece_id,
            "title": info.get("title") or PurePosixPath(rel).stem,
            "composer": info.get("composer", ""),
            "year": info.get("year", ""),
            "split": info.get("split", ""),
            "format": "midi",
            "path": f"files/{rel}",
            "source_path": rel,
        }
        if piece_id in first:  # a.mid next to a.MIDI: one id must name one piece
            row.update(
                path="",
                status="rejected",
                reason=f"same piece id as {first[piece_id]} (only the suffix differs)",
            )
        else:
            first[piece_id] = rel
            row.update(_copy_checksummed(folder / files[rel], out / "files" / rel))
        rows.append(row)
    log.info("%s: %d MIDI files from %s", source.name, len(rows), folder)
    return rows


def _local_folder(url: str, key: str, expected: str) -> Path:
    """The folder a path or file:// URL names, or an error saying what was expected."""
    if not url:
        raise ValueError(f"{key}: not set; expected {expected} (a path or file:// URL)")
    path = local_path(url)
    if path is None:
        raise ValueError(
            f"{key}: {url}: not a local path; expected {expected} (a path or file:// URL)"
        )
    if not path.is_dir():
        what = "not a folder" if path.exists() else "no such folder"
        raise FileNotFoundError(f"{key}: {shown(path)}: {what}; expected {expected}")
    return path


def shown(path: Path) -> str:
    """A path as given, and where a relative one was looked for (the project root)."""
    return str(path) if path.is_absolute() else f"{path} (in {Path.cwd()})"


def _midi_files(folder: Path) -> dict[str, str]:
    """The MIDI files under `folder`, any suffix case, in tree order: their relative POSIX
    paths as `_printable` text, each mapped to its path on disk.

    Hidden files and folders are skipped (`.git`, macOS `._x.mid` resource forks: not MIDI);
    folder symlinks are not followed, so a link loop cannot make the walk endless.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath, name)
            if not name.startswith(".") and name.lower().endswith(MIDI_SUFFIXES) and path.is_file():
                found.append(PurePosixPath(path.relative_to(folder).as_posix()))
    return {_printable(str(rel)): str(rel) for rel in sorted(found, key=tree_key)}


def _printable(rel: str) -> str:
    """A file name that is not UTF-8 (`café.mid` written in Latin-1) with its odd bytes
    escaped (`caf\\xe9.mid`): the piece id and the copy's name must be writable text, and
    the manifest is UTF-8."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _midi_dir_metadata(
    folder: Path, rels: list[str], params: SourceParams, key: str
) -> dict[str, dict[str, str]]:
    """Title, composer, year and split per file from `params.metadata`; {} without one.

    Fields map to the CSV's columns by `params.columns`, else to a column of their own name
    where the CSV has one. A row's file is its path relative to the folder, or its bare file
    name where that is unique. A split is train/valid/validation/test or empty (the hash
    split of prepare); anything else is an error, since a typo must not move a piece.
    """
    if not params.metadata:
        if params.columns:
            raise ValueError(
                f"{key}.columns: given without {key}.metadata (the CSV they name columns of)"
            )
        return {}
    csv = Path(params.metadata).expanduser()
    csv = csv if csv.is_absolute() else folder / csv
    if not csv.is_file():
        raise FileNotFoundError(
            f"{key}.metadata: {shown(csv)}: no such file; expected a "
            f"CSV describing the files (relative to {key}.url, or absolute)"
        )
    table = _read_csv(csv, f"{key}.metadata")
    table.columns = [str(c).strip() for c in table.columns]
    for name, column in params.columns.items():
        if column not in table.columns:
            raise ValueError(
                f"{key}.columns.{name}: no column {column!r} in {csv} (its "
                f"columns: {', '.join(table.columns)})"
            )
    used = {name: params.columns.get(name, name) for name in SourceParams.METADATA_FIELDS}
    used = {name: column for name, column in used.items() if column in table.columns}
    if "file" not in used:
        raise ValueError(
            f"{key}.metadata: {csv} has no column 'file' naming each row's MIDI "
            f"file; name the column that does with {key}.columns.file"
        )
    exact = set(rels)
    by_name: dict[str, list[str]] = {}
    for each in rels:
        by_name.setdefault(PurePosixPath(each).name, []).append(each)
    meta: dict[str, dict[str, str]] = {}
    unmatched: list[str] = []
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
        info = {
            field: str(row[column]).strip() for field, column in used.items() if field != "file"
        }
        if "split" in info:
            value = info["split"].lower()
            if value and value not in SPLIT_NAMES:
                raise ValueError(
                    f"{key}.metadata: {csv}: line {line}: split {info['split']!r} for {rel} "
                    "is not one of train, valid, validation, test (empty: the hash split)"
                )
            info["split"] = SPLIT_NAMES.get(value, "")
        meta[rel] = info
    if unmatched:
        log.warning(
            "%s: %d rows name no MIDI file of %s (or an ambiguous bare name), e.g. %r",
            csv,
            len(unmatched),
            folder,
            unmatched[0],
        )
    return meta


def _read_csv(csv: Path, key: str) -> pd.DataFrame:
    """A metadata CSV as text columns; one that is not UTF-8 CSV text names the param."""
    try:
        return pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(
            f"{key}: {shown(csv)}: not a readable CSV (UTF-8 text, a header line, one row a "
            f"file): {type(err).__name__}: {err}"
        ) from None


def _copy_checksummed(src: Path, dst: Path) -> dict:
    """Copy a file into the fetch folder; its size and sha256 pin what was fetched. A file
    that cannot be read (permissions, a vanished file) is a rejected row, not a failed run."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(src, dst)
    except OSError as err:
        dst.unlink(missing_ok=True)
        log.warning("cannot read %s: %s", src, err.strerror or err)
        return {"path": "", "status": "rejected", "reason": f"unreadable: {err.strerror or err}"}
    return {"size": dst.stat().st_size, "sha256": sha256_file(dst), "status": "ok", "reason": ""}
