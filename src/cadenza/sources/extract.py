"""Safe archive extraction: every entry is checked before a single byte is written.

Refused, with the entry named: absolute paths, `..` components, symlinks or hardlinks that
point outside the target, device files, and archives whose total uncompressed size is over
the limit (a zip bomb). Tar extraction also goes through Python's `data` filter as a second
line of defence. A truncated or corrupt archive (bad CRC, cut-off gzip stream, broken
headers) raises `CorruptArchive` naming the file, whatever the library's own exception was
(issue #8: `tests/test_fuzz.py` flips bits in and truncates real archives). Extraction goes
into the fetch stage's temporary folder, so a failure leaves nothing under `data/`.

`members` (a predicate on entry names) extracts part of an archive, for `limit`: every entry
is still checked for names, links and device files (a hostile archive is refused whatever
is asked of it), while the size limit counts what is extracted.
"""

from __future__ import annotations

import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar

T = TypeVar("T")
Select = Callable[[str], bool]  # an entry name -> extract it?


class UnsafeArchive(RuntimeError):
    """The archive would write outside its target, or is too large; nothing was written."""


class CorruptArchive(RuntimeError):
    """The archive is truncated or damaged; what was extracted must be thrown away."""


def safe_extract(archive: Path, target: Path, max_bytes: int,
                 members: Select | None = None) -> None:
    """Extract `archive` (or the entries `members` selects) into `target`, checked first."""
    _corrupt_as_such(archive, _safe_extract, archive, target, max_bytes, members)


def list_members(archive: Path) -> list[str]:
    """The entry names of a zip or tar archive (files only), in archive order.

    For choosing what `safe_extract(members=...)` takes; a tar.gz is read once through.
    """
    return _corrupt_as_such(archive, _list_members, archive)


def _corrupt_as_such(archive: Path, fn: Callable[..., T], *args: object) -> T:
    """Run `fn`; whatever the library raised on a damaged archive becomes CorruptArchive."""
    try:
        return fn(*args)
    except (UnsafeArchive, MemoryError):
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
            OSError, ValueError, UnicodeDecodeError) as err:
        raise CorruptArchive(f"{archive}: corrupt or truncated archive "
                             f"({type(err).__name__}: {err})") from err


def _list_members(archive: Path) -> list[str]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            return [m.name for m in tf if m.isfile()]
    raise UnsafeArchive(f"{archive}: neither a zip nor a tar archive")


def _safe_extract(archive: Path, target: Path, max_bytes: int, select: Select | None) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            total, chosen = 0, []
            for info in zf.infolist():
                _check_name(archive, info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchive(f"{archive}: {info.filename}: symlinks are refused")
                if select is None or select(info.filename):
                    chosen.append(info)
                    total += info.file_size
                    _check_total(archive, total, max_bytes)
            zf.extractall(target, members=chosen)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            total, chosen = 0, []
            for m in members:
                _check_name(archive, m.name)
                if m.issym() or m.islnk():
                    _check_link(archive, m)
                elif not (m.isfile() or m.isdir()):
                    raise UnsafeArchive(f"{archive}: {m.name}: special files are refused")
                if select is None or select(m.name):
                    chosen.append(m)  # archive order: a gzip stream is never read backwards
                    total += m.size
                    _check_total(archive, total, max_bytes)
            tf.extractall(target, members=chosen, filter="data")
        return
    raise UnsafeArchive(f"{archive}: neither a zip nor a tar archive")


def _check_name(archive: Path, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise UnsafeArchive(f"{archive}: {name}: absolute paths are refused")
    if ".." in path.parts:
        raise UnsafeArchive(f"{archive}: {name}: '..' in a path is refused")


def _check_link(archive: Path, member: tarfile.TarInfo) -> None:
    """A link may point anywhere inside the target, never outside it."""
    base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
    link = PurePosixPath(member.linkname)
    depth = -1 if link.is_absolute() else len([p for p in base.parts if p != "."])
    for part in () if link.is_absolute() else link.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            break
    if depth < 0:
        raise UnsafeArchive(f"{archive}: {member.name} -> {member.linkname}: a link "
                            "pointing outside the target is refused")


def _check_total(archive: Path, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise UnsafeArchive(f"{archive}: more than {max_bytes:,} bytes uncompressed; refused "
                            "(raise sources.<name>.max_extract_mb if this is expected)")
