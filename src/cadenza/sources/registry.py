"""The source registry: every corpus Cadenza knows, declared as data (as MusPy does).

A `Source` says where a corpus comes from (its files, with size and checksum where the
publisher gives them), how its download is laid out, and how prepare must read it: which
tracks to keep, whether the publisher's split is official, whether to transpose. Adding a
corpus means adding an entry here and, for a new layout, one entry in
`cadenza.sources.layouts.LAYOUTS`, the one list of layouts (tests/test_source_registry.py
checks that every source names one). Addresses and checksums are from
`../shared/reference/datasets.md`.

This module imports nothing: the stages that only need to know the sources (train, report)
do not load the fetch machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# What a manifest row's `format` can say: how prepare reads the piece. Each layout declares
# the formats it writes (`cadenza.sources.layouts.LAYOUTS`), and prepare has one reader per
# format (`cadenza.prepare.readers.READERS`); tests/test_source_registry.py checks they meet.
Format = Literal["midi", "npz", "bl_pickle"]


@dataclass(frozen=True)
class RemoteFile:
    url: str  # "" where no stable public address exists (LPD): a mirror or path is required
    name: str  # file name in the download cache
    sha256: str = ""  # from the publisher; "" = unknown (the fetched hash is recorded)
    size: int = 0  # bytes, 0 = unknown
    unpacked: int = 0  # bytes once fully extracted (an archive), 0 = unknown; sizes the
    # default extraction cap (cadenza.sources.extract.extract_cap: twice this)


@dataclass(frozen=True)
class Source:
    name: str
    layout: str  # a key of cadenza.sources.layouts.LAYOUTS: how the download becomes a manifest
    description: str
    license: str
    citation: str
    files: tuple[RemoteFile, ...] = ()
    track_filter: Literal["all", "piano"] = "all"  # "piano": GM programs 0-7, no drums
    official_split: bool = False  # True: the publisher's split is used, never re-split
    transpose: bool = True  # False where the publisher already transposed (B-L: to C)
    step_beats: float = 0.0  # B-L rolls: beats per time step
    options: dict[str, str] = field(default_factory=dict)  # layout-specific settings


_MAESTRO = (
    "Hawthorne et al., Enabling Factorized Piano Music Modeling and Generation with "
    "the MAESTRO Dataset, ICLR 2019"
)
_LPD = (
    "Dong et al., MuseGAN: Multi-track Sequential Generative Adversarial Networks for "
    "Symbolic Music Generation and Accompaniment, AAAI 2018"
)
_BL = (
    "Boulanger-Lewandowski, Bengio & Vincent, Modeling Temporal Dependencies in "
    "High-Dimensional Sequences, ICML 2012"
)
_BL_URL = "http://www-etud.iro.umontreal.ca/~boulanni/"


# MAESTRO MIDI unpacked: ../shared/datasets/maestro-v2.0.0 (the v2 zip's tree, 1282
# performances, CSV and JSON) is 86,300,817 bytes; v3 (1276 performances) taken as the same
_MAESTRO_UNPACKED = 86_300_817
# LPD: ../shared/datasets/lpd_cleansed_sample holds 342 of the 21,425 cleansed rolls in
# 29,704,700 bytes, scaled to 21,425 = 1.861 GB; lpd_5 and lpd_17 hold the same notes merged
# into 5 / 17 tracks, of about the same size, so they share the figure (the 2x cap covers it)
_LPD_UNPACKED = 29_704_700 * 21_425 // 342
# Essen kern edition: ../shared/datasets/essen (8,473 songs and the collection's text files,
# 8,482 files) is 6,393,255 bytes
_ESSEN_UNPACKED = 6_393_255


def _maestro(version: str, sha256: str = "", size: int = 0) -> Source:
    base = "https://storage.googleapis.com/magentadata/datasets/maestro"
    return Source(
        name="maestro" if version == "v3.0.0" else "maestro_v2",
        layout="maestro",
        description=f"MAESTRO {version}: virtuoso piano performances (MIDI only)",
        license="CC BY-NC-SA 4.0",
        citation=_MAESTRO,
        track_filter="piano",
        official_split=True,
        files=(
            RemoteFile(
                f"{base}/{version}/maestro-{version}-midi.zip",
                f"maestro-{version}-midi.zip",
                sha256,
                size,
                _MAESTRO_UNPACKED,
            ),
        ),
    )


def _lpd(name: str, archive: str, piano: str) -> Source:
    return Source(
        name=name,
        layout="lpd",
        description=f"Lakh Pianoroll Dataset, {archive} (21,425 cleansed multitrack rolls)",
        license="CC BY 4.0",
        citation=_LPD,
        track_filter="piano",
        files=(RemoteFile("", archive, unpacked=_LPD_UNPACKED),),  # on cloud drives: a path
        options={"piano": piano},
    )


def _bl(
    name: str, file: str, title: str, step_beats: float, sha256: str = "", size: int = 0
) -> Source:
    return Source(
        name=name,
        layout="bl_pickle",
        description=f"{title}: Boulanger-Lewandowski polyphonic benchmark (piano rolls)",
        license="as the source corpora",
        citation=_BL,
        official_split=True,
        transpose=False,
        step_beats=step_beats,
        files=(RemoteFile(_BL_URL + "icml2012/" + file.replace(" ", "%20"), file, sha256, size),),
    )


SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            name="bach_chorales",
            layout="music21_chorales",
            description="J.S. Bach's four-part chorales shipped with music21 (MusicXML -> MIDI)",
            license="public domain music; music21 corpus (BSD / LGPL)",
            citation="Cuthbert & Ariza, music21: A Toolkit for Computer-Aided Musicology, "
            "ISMIR 2010",
        ),
        _maestro(
            "v3.0.0", "70470ee253295c8d2c71e6d9d4a815189e35c89624b76d22fce5a019d5dde12c", 58_416_533
        ),
        _maestro("v2.0.0"),
        _lpd("lpd_cleansed", "lpd_cleansed.tar.gz", "program"),
        _lpd("lpd_5_cleansed", "lpd_5_cleansed.tar.gz", "name"),
        _lpd("lpd_17_cleansed", "lpd_17_cleansed.tar.gz", "program"),
        Source(
            name="piano_midi_de",
            layout="piano_midi_de",
            description="piano-midi.de (Bernd Krueger): classical piano pieces, crawled politely "
            "(or read from a local copy: url = its folder)",
            license="CC BY-SA Germany",
            citation="Krueger, piano-midi.de",
            track_filter="piano",
            files=(RemoteFile("http://www.piano-midi.de/midis.htm", "midis.htm"),),
        ),
        Source(
            name="essen",
            layout="essen_kern",
            description="Essen Folksong Collection, CCARH Humdrum **kern edition (8,473 songs)",
            license="CCARH academic, non-commercial",
            citation="Schaffrath, The Essen Folksong Collection, ed. D. Huron, CCARH 1995",
            files=(
                RemoteFile(
                    "https://github.com/ccarh/essen-folksong-collection/archive/"
                    "refs/heads/master.zip",
                    "essen-folksong-collection.zip",
                    unpacked=_ESSEN_UNPACKED,
                ),
            ),
        ),
        # JSB and Nottingham: the hashes of the publisher's files (copies in ../shared/datasets,
        # the sizes the prober saw upstream); MuseData and Piano-midi.de: recorded at first fetch
        _bl(
            "bl_jsb",
            "JSB Chorales.pickle",
            "JSB Chorales",
            1.0,
            "6044d47e3eff9f82c59eda06f87e604b9cf7eca6a9900d33d4af20e7074de067",
            367_302,
        ),
        _bl(
            "bl_nottingham",
            "Nottingham.pickle",
            "Nottingham",
            0.5,
            "a67890a3e1e5176ba7026585bc5cf681110d32740b7405157d65ba929a54f867",
            4_245_098,
        ),
        _bl("bl_musedata", "MuseData.pickle", "MuseData", 0.5),
        _bl("bl_piano_midi", "Piano-midi.de.pickle", "Piano-midi.de", 0.5),
        # a researcher's own files: taken as they are (every track), split by piece-id hash
        # unless a metadata CSV gives one. Another own folder is one more entry like this.
        Source(
            name="midi_dir",
            layout="midi_dir",
            description="Your own MIDI: a local folder of .mid/.midi files (set its url)",
            license="yours",
            citation="",
            track_filter="all",
            official_split=False,
        ),
    ]
}
