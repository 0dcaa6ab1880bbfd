"""The source registry: every corpus Cadenza knows, declared as data (as MusPy does).

A `Source` says where a corpus comes from and how prepare must read it: which tracks to keep,
and whether the publisher's own split must be used. Adding a corpus means adding an entry here
and, when its kind is new, one fetcher in `cadenza.sources.fetch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Source:
    name: str
    kind: Literal["music21_corpus"]  # selects the fetcher
    description: str
    url: str  # where the publisher serves it ("" for corpora shipped in a package)
    license: str
    citation: str
    track_filter: Literal["all", "piano"]  # "piano": GM programs 0-7, no drums
    official_split: bool  # True: prepare must use the publisher's split, never re-split
    sha256: str = ""  # of the archive, where the publisher gives one
    size: int = 0  # bytes of the archive, where known


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            name="bach_chorales",
            kind="music21_corpus",
            description="J.S. Bach's four-part chorales shipped with music21 (MusicXML -> MIDI)",
            url="https://github.com/cuthbertLab/music21/tree/master/music21/corpus/bach",
            license="public domain music; music21 corpus (BSD / LGPL)",
            citation="Cuthbert & Ariza, music21: A Toolkit for Computer-Aided Musicology, "
            "ISMIR 2010",
            track_filter="all",
            official_split=False,
        ),
    ]
}
