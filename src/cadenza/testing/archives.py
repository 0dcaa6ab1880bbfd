"""Archives in the official layouts, built from slices of the real copies in ../shared/datasets."""

from __future__ import annotations

import io
import pickle
import random
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import cast

import pandas as pd
import symusic

from cadenza.testing.checkout import DATASETS
from cadenza.testing.loopback import Site

CORRUPT_MIDI = b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xffjunk"


def maestro_zip(per_split: int = 2) -> bytes:
    """`maestro-v2.0.0/` with its CSV, a few performances per split, and one corrupt file."""
    root = DATASETS / "maestro-v2.0.0"
    table = pd.read_csv(root / "maestro-v2.0.0.csv")
    table = table.sort_values("duration").groupby("split").head(per_split)
    corrupt = table.iloc[[0]].assign(midi_filename="2004/corrupt.midi", canonical_title="Broken")
    table = pd.concat([table, corrupt])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("maestro-v2.0.0/maestro-v2.0.0.csv", table.to_csv(index=False))
        zf.writestr("maestro-v2.0.0/LICENSE", "CC BY-NC-SA 4.0")
        for name in table.midi_filename:
            data = CORRUPT_MIDI if "corrupt" in name else (root / name).read_bytes()
            zf.writestr(f"maestro-v2.0.0/{name}", data)
    return buf.getvalue()


def lpd_tar(n: int = 6) -> bytes:
    """`lpd_cleansed/A/B/C/TR.../<md5>.npz`, the nested tree of lpd_cleansed.tar.gz."""
    root = DATASETS / "lpd_cleansed_sample"
    files = sorted((root / "lpd_cleansed").rglob("*.npz"))[:n]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path in files:
            tf.add(path, arcname=str(path.relative_to(root)))
    return buf.getvalue()


def essen_zip(n: int = 4) -> bytes:
    """The GitHub archive of ccarh/essen-folksong-collection: one top folder, then the tree."""
    root = DATASETS / "essen"
    files = sorted((root / "europa" / "deutschl" / "erk").glob("*.krn"))[:n]
    files += sorted((root / "asia" / "china" / "han").glob("*.krn"))[:2]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in files:
            zf.write(path, f"essen-folksong-collection-master/{path.relative_to(root)}")
    return buf.getvalue()


def piano_midi_de_site(site: Site, composers: int = 2, per_composer: int = 2) -> str:
    """HTML pages like piano-midi.de's: an index, composer pages, then the MIDI files."""
    root = DATASETS / "piano-midi.de" / "midis"
    index_links = []
    for composer in sorted(p.name for p in root.iterdir())[:composers]:
        files = sorted((root / composer).glob("*.mid"))[:per_composer]
        page = "".join(f'<a href="midis/{composer.lower()}/{f.name}">{f.stem}</a>' for f in files)
        site.files[f"/pmd/{composer.lower()}.htm"] = f"<html>{page}</html>".encode()
        for f in files:
            site.files[f"/pmd/midis/{composer.lower()}/{f.name}"] = f.read_bytes()
        index_links.append(f'<a href="{composer.lower()}.htm">{composer}</a>')
    index_links.append('<a href="http://elsewhere.example/x.htm">off-site</a>')
    site.files["/pmd/midis.htm"] = ("<html>" + "".join(index_links) + "</html>").encode()
    return site.url("/pmd/midis.htm")


def piano_midi_de_folder(root: Path, n: int = 10) -> tuple[Path, pd.DataFrame]:
    """A slice of the shared copy in its published layout (`midis/<Composer>/*.mid` +
    `metadata.csv`): the first n files plus the two Schubert pieces whose metadata rows spell
    the file name in another case."""
    shared = DATASETS / "piano-midi.de"
    table = pd.read_csv(shared / "metadata.csv", dtype=str, keep_default_na=False)
    files = sorted((shared / "midis").rglob("*.mid"))[:n]
    files += sorted((shared / "midis" / "Schubert").glob("schubert_d850_[12].mid"))
    folded = {str(p.relative_to(shared)).lower() for p in files}
    table = table[table.midi.str.lower().isin(folded)]
    for path in files:
        (root / path.relative_to(shared)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / path.relative_to(shared))
    table.to_csv(root / "metadata.csv", index=False)
    return root, table


def bl_pickle_from_midi(
    folder: Path,
    step_beats: float,
    splits: tuple[int, int, int] = (3, 3, 3),
    max_steps: int = 200,
    shuffle_seed: int | None = None,
) -> bytes:
    """A pickle in the B-L format (dict of splits -> pieces -> steps -> pitches), made from
    real MIDI files, for the two benchmarks that ../shared does not ship (MuseData,
    Piano-midi.de): `splits` pieces for train / valid / test, taken in path order or, with a
    `shuffle_seed`, from across the folder; each piece cut to `max_steps` (0 = whole)."""
    files = sorted(folder.rglob("*.mid"))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(files)
    pieces = []
    for path in files[: sum(splits)]:
        # symusic's factory is typed as the generic Score; a MIDI file loads in ticks
        loaded = cast(symusic.core.ScoreTick, symusic.Score(str(path)))
        score = loaded.resample(int(round(1 / step_beats)), min_dur=1)
        steps: list[set[int]] = [set() for _ in range(score.end() + 1)]
        for track in score.tracks:
            for note in track.notes:
                for t in range(note.time, note.time + note.duration):
                    if 21 <= note.pitch <= 108:
                        steps[t].add(note.pitch)
        pieces.append([sorted(s) for s in steps[: max_steps or None]])
    n_train, n_valid, _ = splits
    data = {
        "train": pieces[:n_train],
        "valid": pieces[n_train : n_train + n_valid],
        "test": pieces[n_train + n_valid :],
    }
    return pickle.dumps(data, protocol=2)


def serve_all(site: Site) -> dict[str, dict]:
    """Put every corpus on the site; return the `sources:` params that point at it."""
    site.files["/maestro/maestro-v2.0.0-midi.zip"] = maestro_zip()
    site.files["/lpd/lpd_cleansed.tar.gz"] = lpd_tar()
    site.files["/essen/master.zip"] = essen_zip()
    bl = DATASETS / "boulanger2012"
    site.files["/bl/JSB%20Chorales.pickle"] = (bl / "JSB Chorales.pickle").read_bytes()
    site.files["/bl/Nottingham.pickle"] = (bl / "Nottingham.pickle").read_bytes()
    site.files["/bl/MuseData.pickle"] = bl_pickle_from_midi(
        DATASETS / "piano-midi.de" / "midis" / "Bach", 0.5
    )
    site.files["/bl/Piano-midi.de.pickle"] = bl_pickle_from_midi(
        DATASETS / "piano-midi.de" / "midis" / "Chopin", 0.5
    )
    pmd = piano_midi_de_site(site)
    return {
        "maestro_v2": {"url": site.url("/maestro/maestro-v2.0.0-midi.zip")},
        "lpd_cleansed": {"url": site.url("/lpd/lpd_cleansed.tar.gz")},
        "piano_midi_de": {"url": pmd, "delay_s": 0.01},
        "essen": {"url": site.url("/essen/master.zip"), "subset": "europa/deutschl/erk"},
        "bl_jsb": {"url": site.url("/bl/JSB%20Chorales.pickle")},
        "bl_nottingham": {"url": site.url("/bl/Nottingham.pickle")},
        "bl_musedata": {"url": site.url("/bl/MuseData.pickle")},
        "bl_piano_midi": {"url": site.url("/bl/Piano-midi.de.pickle")},
    }
