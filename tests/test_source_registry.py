"""The registries meet: every source names a registered layout, every format a layout
declares has a prepare reader, and the registry's pinned checksums are well-formed (the
downloader takes them as given; params are checked when they are loaded)."""

from __future__ import annotations

import re
from typing import get_args

import pytest

from cadenza.prepare.readers import READERS
from cadenza.sources.fetch import check_formats
from cadenza.sources.layouts import LAYOUTS, layout_of
from cadenza.sources.registry import SOURCES, Format, Source


def test_every_source_names_a_registered_layout():
    assert {s.layout for s in SOURCES.values()} <= set(LAYOUTS)


def test_every_format_a_layout_writes_has_a_reader():
    written = {f for layout in LAYOUTS.values() for f in layout.formats}
    assert written <= set(READERS)
    assert set(READERS) == set(get_args(Format))  # no reader for a format nobody declares


def test_registry_checksums_are_64_lowercase_hex_digits():
    pinned = [f.sha256 for s in SOURCES.values() for f in s.files if f.sha256]
    assert pinned and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in pinned)


def test_an_unknown_layout_is_named_with_the_known_ones():
    odd = Source(name="odd", layout="tarball", description="", license="", citation="")
    with pytest.raises(ValueError, match=r"odd: unknown layout 'tarball' \(known: music21"):
        layout_of(odd)


def test_fetch_refuses_rows_in_a_format_the_layout_does_not_declare():
    source = SOURCES["maestro"]
    rows = [
        {"piece_id": "a", "format": "midi", "status": "ok"},
        {"piece_id": "b", "format": "npz", "status": "ok"},
        {"piece_id": "c", "format": "bl_pickle", "status": "rejected"},  # never read
    ]
    with pytest.raises(RuntimeError, match=r"wrote rows in format\(s\) \['npz'\]"):
        check_formats(rows, layout_of(source), source)
    check_formats(rows[:1] + rows[2:], layout_of(source), source)
