"""Safe archive extraction: every entry is checked, and the whole archive verified, before a
single byte is written.

Refused, with the entry named: absolute paths, `..` components, symlinks or hardlinks that
point outside the target, entries written or links pointing through a symlink of the archive,
device files, and archives whose total uncompressed size is over the cap (a zip bomb). Tar
extraction also goes through Python's `data` filter as a second line of defence.

Integrity (issue #18): tarfile never reads a gzip stream's trailer, so a flipped byte in a
`.tar.gz` used to extract "successfully" with wrong bytes. So before anything is written the
whole compressed stream is read to its end, in constant memory: for gzip the CRC32 and length
of every member and no trailing garbage, for bz2 and xz their own end-of-stream checks; for a
zip every member is read so every CRC is checked. The format is decided by magic bytes, not by
whether a library can open the file, so a truncated zip is reported as one. Any failure raises
`CorruptArchive` naming the archive (and the zip member) and what failed. Extraction goes into
the fetch stage's temporary folder, so a failure leaves nothing under `data/`.

`members` (a predicate on entry names) extracts part of an archive, for `limit`: every entry
is still checked for names, links and device files (a hostile archive is refused whatever
is asked of it), while the size cap counts what is extracted.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import stat
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar

T = TypeVar("T")
Select = Callable[[str], bool]  # an entry name -> extract it?

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # verification reads this much at a time: constant memory on a 1 GB tarball
PARAM = "sources.<name>.max_extract_mb"  # what to raise, when the caller does not say

# The cap when neither the params nor the registry give one. Corpora compress 1-10x (MIDI and
# npz rolls barely, kern text about 4x in a zip); 50x leaves room for any of them while a
# decompression bomb (zeros deflate about 1000x) is refused. Never above 20 GB (the largest
# corpus known, LPD-cleansed, unpacks to about 1.9 GB); never below 10 MB, so that a tiny
# archive of text is not refused for its ratio alone.
RATIO_CAP = 50
MAX_CAP = 20_000_000_000
MIN_CAP = 10_000_000

_MAGIC = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
}
_OPEN: dict[str, Callable[[Path], io.BufferedIOBase]] = {
    "gzip": gzip.GzipFile,
    "bz2": bz2.BZ2File,
    "xz": lzma.LZMAFile,
    "tar": lambda path: open(path, "rb"),  # noqa: SIM115 - closed by the caller's `with`
}


class UnsafeArchive(RuntimeError):
    """The archive would write outside its target, or is too large; nothing was written."""


class CorruptArchive(RuntimeError):
    """The archive is truncated or damaged; nothing was written."""


def extract_cap(archive: Path, max_extract_mb: int, unpacked: int) -> int:
    """Bytes `archive` may unpack to: `max_extract_mb` when the params set it (> 0), else
    `RATIO_CAP` times the archive's size, within [MIN_CAP, MAX_CAP], and no more than twice
    what the registry says the file unpacks to (`unpacked`, bytes; room for a new release).

    Why both: the registry's size alone let a 1 MB bomb given as LPD's mirror unpack to the
    3.7 GB that LPD-cleansed may, and the ratio alone lets a small corpus grow 50-fold."""
    by_ratio = min(MAX_CAP, max(MIN_CAP, RATIO_CAP * archive.stat().st_size))
    if max_extract_mb > 0:
        return max_extract_mb * 1_000_000
    if unpacked > 0:
        return min(2 * unpacked, by_ratio)
    return by_ratio


def safe_extract(
    archive: Path, target: Path, max_bytes: int, members: Select | None = None, param: str = PARAM
) -> None:
    """Extract `archive` (or the entries `members` selects) into `target`, checked and verified
    first; `param` is the setting named when the archive is over `max_bytes`."""
    _corrupt_as_such(archive, _safe_extract, archive, target, max_bytes, members, param)


def list_members(archive: Path) -> list[str]:
    """The entry names of a zip or tar archive (files only), in archive order.

    For choosing what `safe_extract(members=...)` takes. A compressed tar is read once through
    and verified on the way (the same pass that lists it), so a damaged one fails here."""
    return _corrupt_as_such(archive, _list_members, archive)


def _corrupt_as_such(archive: Path, fn: Callable[..., T], *args: object) -> T:
    """Run `fn`; whatever the library raised on a damaged archive becomes CorruptArchive."""
    try:
        return fn(*args)
    except (UnsafeArchive, CorruptArchive, MemoryError):
        raise
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        EOFError,
        zlib.error,
        lzma.LZMAError,
        OSError,
        ValueError,
        UnicodeDecodeError,
    ) as err:
        raise CorruptArchive(
            f"{archive}: corrupt or truncated archive ({type(err).__name__}: {err})"
        ) from err


def _kind(archive: Path) -> str:
    """zip, gzip, bz2, xz or tar (uncompressed), from the first bytes: a truncated zip has
    no central directory for `zipfile.is_zipfile` to find, but it still starts as a zip."""
    with open(archive, "rb") as fh:
        head = fh.read(512)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if head[257:262] == b"ustar":
        return "tar"
    if zipfile.is_zipfile(archive):  # data before the first entry (a self-extracting zip)
        return "zip"
    if tarfile.is_tarfile(archive):  # a pre-POSIX tar, without the ustar magic
        return "tar"
    raise UnsafeArchive(
        f"{archive}: neither a zip nor a tar archive (it starts with {head[:8]!r}); refused"
    )


def _list_members(archive: Path) -> list[str]:
    kind = _kind(archive)
    if kind == "zip":
        with _open_zip(archive) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    names, _, _ = _scan_tar(archive, kind, sys.maxsize, None, PARAM)
    return names


def _safe_extract(
    archive: Path, target: Path, max_bytes: int, select: Select | None, param: str
) -> None:
    kind = _kind(archive)
    if kind == "zip":
        _extract_zip(archive, target, max_bytes, select, param)
    else:
        _extract_tar(archive, kind, target, max_bytes, select, param)


# --------------------------------------------------------------------------- zip


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except zipfile.BadZipFile as err:
        raise CorruptArchive(
            f"{archive}: truncated or corrupt zip ({err}: no readable "
            "end-of-central-directory record)"
        ) from err


def _extract_zip(
    archive: Path, target: Path, max_bytes: int, select: Select | None, param: str
) -> None:
    with _open_zip(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _check_name(archive, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchive(f"{archive}: {info.filename}: symlinks are refused")
        chosen = [i for i in infos if select is None or select(i.filename)]
        _check_total(archive, sum(i.file_size for i in chosen), max_bytes, param, exact=True)
        # every member when the whole archive is within the cap, else only what is extracted:
        # zipfile never inflates a member past its declared size, so this reads <= max_bytes
        whole = sum(i.file_size for i in infos) <= max_bytes
        _verify_zip(archive, zf, infos if whole else chosen)
        target.mkdir(parents=True, exist_ok=True)
        zf.extractall(target, members=chosen)


def _verify_zip(archive: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Read each member to its end, so zipfile checks its CRC-32; nothing is kept."""
    log.info(
        "verifying %s (%d members, %.1f MB unpacked)",
        archive,
        len(infos),
        sum(i.file_size for i in infos) / 1e6,
    )
    for info in infos:
        if info.is_dir():
            continue
        try:
            with zf.open(info) as fh:
                while fh.read(CHUNK):
                    pass
        except zipfile.BadZipFile as err:
            why = "bad CRC" if "CRC" in str(err) else f"corrupt ({err})"
            raise CorruptArchive(f"{archive}: zip member {info.filename}: {why}") from err
        except EOFError as err:
            raise CorruptArchive(
                f"{archive}: zip member {info.filename}: truncated (its data ends early)"
            ) from err
        except (
            zlib.error,
            lzma.LZMAError,
            OSError,
            NotImplementedError,
            RuntimeError,
            ValueError,
        ) as err:  # bad deflate data, unknown method, encrypted
            raise CorruptArchive(
                f"{archive}: zip member {info.filename}: corrupt ({type(err).__name__}: {err})"
            ) from err


# --------------------------------------------------------------------------- tar


def _extract_tar(
    archive: Path, kind: str, target: Path, max_bytes: int, select: Select | None, param: str
) -> None:
    _, chosen, links = _scan_tar(archive, kind, max_bytes, select, param)
    target.mkdir(parents=True, exist_ok=True)
    # a stream is inflated once more, front to back; a hard link to an entry not extracted
    # needs random access to it, so only then is the archive opened for seeking
    with tarfile.open(archive, "r:*" if links else "r|*") as tf:
        wanted = (m for index, m in enumerate(tf) if index in chosen)  # archive order
        tf.extractall(target, members=wanted, filter="data")


def _scan_tar(
    archive: Path, kind: str, max_bytes: int, select: Select | None, param: str
) -> tuple[list[str], set[int], bool]:
    """One pass over the whole archive: every header checked, the chosen entries' sizes
    counted against the cap (a bomb is refused at its first oversized header), and the
    compressed stream read to its very end so its checksums are verified.

    Returns the file names, the indices of the chosen entries, and whether one of those is a
    hard link."""
    log.info("verifying %s (%.1f MB, %s)", archive, archive.stat().st_size / 1e6, kind)
    names: list[str] = []
    chosen: set[int] = set()
    every: list[str] = []  # every entry's name, directories and links too
    linked: list[tarfile.TarInfo] = []  # every symlink and hard link
    links, total = False, 0
    with _OPEN[kind](archive) as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|") as tf:
                for index, m in enumerate(tf):
                    _check_name(archive, m.name)
                    every.append(m.name)
                    if m.issym() or m.islnk():
                        _check_link(archive, m)
                        linked.append(m)
                    elif not (m.isfile() or m.isdir()):
                        raise UnsafeArchive(f"{archive}: {m.name}: special files are refused")
                    if m.isfile():
                        names.append(m.name)
                    if select is None or select(m.name):
                        chosen.add(index)
                        links = links or m.islnk()
                        total += m.size
                        _check_total(archive, total, max_bytes, param, exact=False)
        except tarfile.TarError as err:
            _drain(archive, kind, raw)  # a damaged stream is the real cause: say that
            raise CorruptArchive(f"{archive}: truncated or corrupt tar ({err})") from err
        except (EOFError, OSError, zlib.error, lzma.LZMAError) as err:
            raise _stream_error(archive, kind, err) from err
        _drain(archive, kind, raw)
    _check_through_symlinks(archive, every, linked)
    return names, chosen, links


def check_stream(archive: Path, kind: str) -> None:
    """Decompress the whole of `archive`, a `kind` stream (gzip, bz2, xz), output discarded,
    in constant memory: CorruptArchive if it ends early or fails the compressor's checks
    (gzip: every member's CRC-32 and length, nothing but zero padding after the last)."""
    with _OPEN[kind](archive) as raw:
        _drain(archive, kind, raw)


def _drain(archive: Path, kind: str, raw: io.BufferedIOBase) -> None:
    """Read the rest of the stream: the compressor checks its trailer(s) at the end."""
    try:
        while raw.read(CHUNK):
            pass
    except (EOFError, OSError, zlib.error, lzma.LZMAError) as err:
        raise _stream_error(archive, kind, err) from err


def _stream_error(archive: Path, kind: str, err: Exception) -> CorruptArchive:
    """The compressor's exception, said plainly."""
    text = str(err)
    if isinstance(err, EOFError):
        why = f"truncated: {kind} stream ends early"
    elif "CRC check failed" in text:
        why = f"gzip CRC mismatch ({text})"
    elif "Incorrect length" in text:
        why = "gzip length mismatch (the ISIZE trailer)"
    elif "Not a gzipped file" in text:
        why = "trailing garbage after the gzip stream"
    else:
        why = f"corrupt {kind} data ({type(err).__name__}: {text})"
    return CorruptArchive(f"{archive}: {why}")


# --------------------------------------------------------------------------- checks


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
        raise UnsafeArchive(
            f"{archive}: {member.name} -> {member.linkname}: a link "
            "pointing outside the target is refused"
        )


def _check_through_symlinks(archive: Path, names: list[str], linked: list[tarfile.TarInfo]) -> None:
    """No entry is written through a symlink of the archive, and no link points through one.

    Why: `_check_link` reads a link's target as text. Through another symlink the text and
    the file system disagree: `x -> .` then `l -> x/x/x/../../..` reads as inside and lands
    outside, and a long chain of such links also slipped past Python's `data` filter
    (CVE-2025-4517). No corpus stores a link through a link, so none is allowed. Checked on
    the whole archive, after the scan, so that archive order cannot hide a chain."""
    symlinks = {PurePosixPath(m.name) for m in linked if m.issym()}
    if not symlinks:
        return
    for name in names:
        for parent in PurePosixPath(name).parents:
            if parent in symlinks:
                raise UnsafeArchive(
                    f"{archive}: {name}: written through the symlink {parent}; refused"
                )
    for m in linked:
        walked = PurePosixPath(m.name).parent if m.issym() else PurePosixPath()
        for part in PurePosixPath(m.linkname).parts:
            walked = walked.parent if part == ".." else walked / part
            if walked in symlinks:
                raise UnsafeArchive(
                    f"{archive}: {m.name} -> {m.linkname}: a link through the symlink "
                    f"{walked} is refused"
                )


def _check_total(archive: Path, total: int, max_bytes: int, param: str, exact: bool) -> None:
    if total > max_bytes:
        size = f"{total:,}" if exact else f"at least {total:,}"
        raise UnsafeArchive(
            f"{archive}: would unpack to {size} bytes, more than "
            f"{max_bytes:,} bytes (the cap); refused, nothing written "
            f"(raise {param}, in MB, if this is expected)"
        )
