"""Content sniffing: do the bytes look like the kind of file their name promises?

Why: a server that fails often still answers 200, with an HTML error page, and a transfer
cut short without a Content-Length looks complete to HTTP. Cheap checks of the first and
last bytes tell both apart from a real zip, gzip, pickle or MIDI file before the file is
cached (the checksum, when there is one, is the full check).
"""

from __future__ import annotations

import pickletools
from pathlib import Path

# what a protocol 0/1 pickle may start with: an opcode that pops nothing (2+: 0x80 PROTO)
_PICKLE_OPENERS = frozenset(
    op.code.encode("latin-1") for op in pickletools.opcodes if op.proto <= 1 and not op.stack_before
)
_ZIP_EOCD_SPAN = 22 + 0xFFFF  # the end record and the longest archive comment


def expected_kind(name: str) -> str:
    """The kind of file a cache name promises ("" = unknown: not sniffed)."""
    lower = name.lower()
    for suffixes, kind in (
        ((".zip",), "zip"),
        ((".tar.gz", ".tgz"), "gzip"),
        ((".pickle", ".pkl"), "pickle"),
        ((".mid", ".midi"), "MIDI"),
        ((".htm", ".html"), "text"),
    ):
        if lower.endswith(suffixes):
            return kind
    return ""


def sniff(path: Path, name: str) -> tuple[str, bool]:
    """What is wrong with `path` as the kind of file `name` promises ("" if nothing), and
    whether it looks cut short: the right beginning with the end missing."""
    kind = expected_kind(name)
    if not kind:
        return "", False
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(512)
        fh.seek(max(0, size - _ZIP_EOCD_SPAN))
        tail = fh.read()
    if kind == "text":
        return ("binary data, not a text page" if b"\0" in head else ""), False
    if not head:
        return f"an empty file, not a {kind} file", True
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return f"{describe(head, size)}, not a {kind} file", False
    starts = {
        "zip": head.startswith(b"PK\x03\x04"),
        "gzip": head.startswith(b"\x1f\x8b"),
        "pickle": head[:1] == b"\x80" or head[:1] in _PICKLE_OPENERS,
        "MIDI": head.startswith((b"MThd", b"RIFF")),
    }[kind]
    if not starts:
        return f"{describe(head, size)}, not a {kind} file", False
    if kind == "zip" and b"PK\x05\x06" not in tail:
        return f"a zip archive with no end-of-central-directory record ({size} bytes)", True
    if kind == "pickle" and not tail.endswith(b"."):
        return f"a pickle with no final STOP opcode ({size} bytes)", True
    return "", False


def describe(head: bytes, size: int) -> str:
    """A short, printable account of what came back, e.g. 'HTML page, 28 bytes, starting
    "<html>..."'."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    printable = all(32 <= b < 127 or b in b"\t\r\n" for b in text[:64])
    what = "HTML page" if text.startswith(b"<") else "text" if printable else "data"
    start = text[:40].decode("latin-1") if printable else repr(text[:16])
    start = " ".join(start.split())
    return f'{what}, {size} bytes, starting "{start}{"..." if len(text) > 40 else ""}"'
