"""Local corpora and `limit` at fetch time: `midi_dir` (your own MIDI), a local copy of
piano-midi.de, and archives of which only the first N pieces are extracted.

Every test calls the real `fetch_source`. The synthetic ones write real MIDI files with
`write_score` and need nothing else; those built from ../shared/datasets skip without it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cadenza.config import ParamsError, PrepareParams, SourceParams, from_dict
from cadenza.prepare.shards import read_pieces
from cadenza.prepare.stage import prepare
from cadenza.sources.extract import UnsafeArchive, safe_extract
from cadenza.sources.fetch import fetch_source
from cadenza.testing import archives
from cadenza.testing.checkout import DATASETS
from cadenza.testing.corpora import chorale_like, write_score
from cadenza.testing.loopback import Site, serve

needs_shared = pytest.mark.skipif(
    not DATASETS.is_dir(), reason="needs ../shared/datasets (real corpora)"
)
SLOW_DELAY_S = 30.0  # a crawler that slept even once on a local read would take this long


def _fetch(name: str, tmp: Path, **params) -> pd.DataFrame:
    fetch_source(name, tmp / "raw" / name, tmp / "cache", SourceParams(**params))
    return pd.read_csv(tmp / "raw" / name / "manifest.csv", dtype=str, keep_default_na=False)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _own_folder(root: Path) -> Path:
    """Nested folders, suffixes in every case, and things that are not music."""
    rng = np.random.default_rng(1)
    for rel in ("b/Song.MID", "a/x.mid", "a-b/y.Midi", "top.midi", "a/deeper/z.mid"):
        write_score(root / rel, chorale_like(rng))
    (root / ".git").mkdir()
    write_score(root / ".git" / "hidden.mid", chorale_like(rng))
    (root / "._top.mid").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (root / "notes.txt").write_text("not music")
    return root


# --------------------------------------------------------------------------- midi_dir


def test_midi_dir_walks_nested_folders_in_tree_order_and_checksums(tmp_path):
    own = _own_folder(tmp_path / "own")
    manifest = _fetch("midi_dir", tmp_path, url=str(own))
    assert list(manifest.piece_id) == ["a/deeper/z", "a/x", "a-b/y", "b/Song", "top"]
    assert set(manifest.status) == {"ok"} and set(manifest.format) == {"midi"}
    raw = tmp_path / "raw" / "midi_dir"
    assert _files(raw / "files") == [
        "a-b/y.Midi",
        "a/deeper/z.mid",
        "a/x.mid",
        "b/Song.MID",
        "top.midi",
    ]
    for row in manifest.itertuples():
        data = (own / row.source_path).read_bytes()
        assert (raw / row.path).read_bytes() == data
        assert row.sha256 == hashlib.sha256(data).hexdigest() and int(row.size) == len(data)
    assert manifest.split.eq("").all()  # no metadata: prepare's hash split


def test_midi_dir_takes_a_relative_path_or_file_url_and_a_limit(tmp_path, monkeypatch):
    _own_folder(tmp_path / "project" / "mine")
    monkeypatch.chdir(tmp_path / "project")  # DVC runs stages in the project root
    manifest = _fetch("midi_dir", tmp_path, url="mine", limit=2)
    assert list(manifest.piece_id) == ["a/deeper/z", "a/x"]
    assert _files(tmp_path / "raw" / "midi_dir" / "files") == ["a/deeper/z.mid", "a/x.mid"]
    url = (tmp_path / "project" / "mine").as_uri()
    assert len(_fetch("midi_dir", tmp_path / "u", url=url)) == 5


def test_midi_dir_metadata_columns_and_split_reach_prepare(tmp_path):
    own = _own_folder(tmp_path / "own")
    (own / "info.csv").write_text(
        "path,name,who,when,part\n"
        "a/x.mid,Air,Bach,1725,train\n"
        "Song.MID,A Song,Anon,,Validation\n"  # a bare file name, unique in the folder
        "top.midi,Top,Anon,2020,\n"  # empty split: the hash split
        "gone.mid,Gone,Nobody,1900,test\n"
    )  # no such file: warned, not an error
    columns = {"file": "path", "title": "name", "composer": "who", "year": "when", "split": "part"}
    manifest = _fetch(
        "midi_dir", tmp_path, url=str(own), metadata="info.csv", columns=columns
    ).set_index("piece_id")
    assert manifest.loc["a/x", ["title", "composer", "year", "split"]].tolist() == [
        "Air",
        "Bach",
        "1725",
        "train",
    ]
    assert manifest.loc["b/Song", ["title", "split"]].tolist() == ["A Song", "valid"]
    assert manifest.loc["top", "split"] == "" and manifest.loc["a-b/y", "title"] == "y"
    prepare(tmp_path / "raw", ["midi_dir"], tmp_path / "prepared", PrepareParams())
    pieces = read_pieces(tmp_path / "prepared").set_index("piece_id")
    assert pieces.loc["midi_dir/a/x", "split"] == "train"
    assert pieces.loc["midi_dir/b/Song", "split"] == "valid"
    assert pieces.loc["midi_dir/a/x", "composer"] == "Bach"
    assert len(pieces) == 5


def test_midi_dir_default_columns_are_the_field_names(tmp_path):
    own = _own_folder(tmp_path / "own")
    (tmp_path / "meta.csv").write_text("file,title\na/x.mid,Air\n")  # absolute path
    manifest = _fetch("midi_dir", tmp_path, url=str(own), metadata=str(tmp_path / "meta.csv"))
    assert manifest.set_index("piece_id").loc["a/x", "title"] == "Air"


@pytest.mark.parametrize(
    ("csv", "params", "message"),
    [
        (
            None,
            {"metadata": "missing.csv"},
            r"sources\.midi_dir\.metadata: .*missing\.csv: no such file; expected a CSV",
        ),
        (
            "file,title\na/x.mid,Air\n",
            {"metadata": "m.csv", "columns": {"title": "name"}},
            r"sources\.midi_dir\.columns\.title: no column 'name' in .*m\.csv "
            r"\(its columns: file, title\)",
        ),
        (
            "path,title\na/x.mid,Air\n",
            {"metadata": "m.csv"},
            r"sources\.midi_dir\.metadata: .*m\.csv has no column 'file'.*columns\.file",
        ),
        (
            "file,split\na/x.mid,tset\n",
            {"metadata": "m.csv"},
            r"sources\.midi_dir\.metadata: .*m\.csv: line 2: split 'tset' for a/x\.mid is not one "
            r"of train, valid, validation, test",
        ),
        ("file\na/x.mid\nx.mid\n", {"metadata": "m.csv"}, r"line 3: a second row for a/x\.mid"),
        (None, {"columns": {"file": "path"}}, r"sources\.midi_dir\.columns: given without"),
        (  # Latin-1, an empty file, broken quoting: the param and the file, in one line
            b"file,title\na/x.mid,Caf\xe9\n",
            {"metadata": "m.csv"},
            r"sources\.midi_dir\.metadata: .*m\.csv: not a readable CSV .*UnicodeDecodeError",
        ),
        ("", {"metadata": "m.csv"}, r"sources\.midi_dir\.metadata: .*m\.csv: .*EmptyDataError"),
        (
            'file,title\n"a/x.mid,Air\n',
            {"metadata": "m.csv"},
            r"sources\.midi_dir\.metadata: .*m\.csv: not a readable CSV .*ParserError",
        ),
    ],
)
def test_midi_dir_metadata_errors_name_what_is_wrong(tmp_path, csv, params, message):
    own = _own_folder(tmp_path / "own")
    if isinstance(csv, bytes):
        (own / "m.csv").write_bytes(csv)
    elif csv is not None:
        (own / "m.csv").write_text(csv)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _fetch("midi_dir", tmp_path, url=str(own), **params)
    assert not (tmp_path / "raw" / "midi_dir").exists()  # nothing half-written


def test_midi_dir_missing_or_empty_folder_says_what_was_expected(tmp_path):
    missing = tmp_path / "x" / "y"
    with pytest.raises(FileNotFoundError) as err:
        _fetch("midi_dir", tmp_path, url=str(missing))
    assert str(err.value) == (
        f"sources.midi_dir.url: {missing}: no such folder; expected a "
        "folder of .mid/.midi files (searched recursively)"
    )
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no music here")
    with pytest.raises(
        FileNotFoundError,
        match=r"empty: no \.mid/\.midi files in it or its "
        r"subfolders",
    ):
        _fetch("midi_dir", tmp_path, url=str(empty))
    with pytest.raises(ValueError, match=r"sources\.midi_dir\.url: not set; expected a folder"):
        _fetch("midi_dir", tmp_path, url="")
    assert list((tmp_path / "raw").iterdir()) == []  # no half-made data/raw/midi_dir


def test_midi_dir_same_name_with_two_suffixes_is_one_piece(tmp_path):
    own = tmp_path / "own"
    rng = np.random.default_rng(2)
    write_score(own / "a.mid", chorale_like(rng))
    write_score(own / "a.MIDI", chorale_like(rng))
    manifest = _fetch("midi_dir", tmp_path, url=str(own))
    assert manifest.source_path.tolist() == ["a.MIDI", "a.mid"]  # code point order: first wins
    assert manifest.status.tolist() == ["ok", "rejected"]
    assert "same piece id as a.MIDI" in manifest.reason.iloc[1]
    assert _files(tmp_path / "raw" / "midi_dir" / "files") == ["a.MIDI"]


def test_midi_dir_keeps_a_file_name_that_is_not_utf8(tmp_path):
    # `café.mid` written by an old system in Latin-1: a name Python can list but not write
    # to a UTF-8 manifest; it used to stop the whole fetch
    own = tmp_path / "own"
    write_score(own / "plain.mid", chorale_like(np.random.default_rng(3)))
    latin1 = os.fsencode(own) + b"/caf\xe9.mid"
    with open(latin1, "wb") as f:
        f.write((own / "plain.mid").read_bytes())
    manifest = _fetch("midi_dir", tmp_path, url=str(own))
    assert manifest.piece_id.tolist() == ["caf\\xe9", "plain"]
    assert manifest.status.tolist() == ["ok", "ok"]
    assert manifest.sha256.iloc[0] == manifest.sha256.iloc[1]
    prepare(tmp_path / "raw", ["midi_dir"], tmp_path / "prepared", PrepareParams())
    assert "midi_dir/caf\\xe9" in set(read_pieces(tmp_path / "prepared").piece_id)


def test_midi_dir_rejects_an_unreadable_file_and_fetches_the_rest(tmp_path):
    """One file the fetch may not read is a rejected row, not a failed run. As root (who
    reads anything), the fetch runs under `setpriv` without the file-access capabilities."""
    own = tmp_path / "own"
    rng = np.random.default_rng(4)
    for name in ("a.mid", "b_secret.mid", "c.mid"):
        write_score(own / name, chorale_like(rng))
    (own / "b_secret.mid").chmod(0)
    command = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; from cadenza.config import SourceParams; "
        "from cadenza.sources.fetch import fetch_source; "
        "fetch_source('midi_dir', Path(sys.argv[1]), Path(sys.argv[2]), "
        "SourceParams(url=sys.argv[3]))",
        str(tmp_path / "raw" / "midi_dir"),
        str(tmp_path / "cache"),
        str(own),
    ]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: every file is readable")
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *command]
    subprocess.run(command, check=True, capture_output=True)
    manifest = pd.read_csv(tmp_path / "raw" / "midi_dir" / "manifest.csv", dtype=str)
    assert manifest.status.tolist() == ["ok", "rejected", "ok"]
    assert manifest.reason.iloc[1] == "unreadable: Permission denied"
    assert _files(tmp_path / "raw" / "midi_dir" / "files") == ["a.mid", "c.mid"]


def test_midi_dir_subset_keeps_one_subfolder(tmp_path):
    own = _own_folder(tmp_path / "own")
    manifest = _fetch("midi_dir", tmp_path, url=str(own), subset="a")
    assert manifest.piece_id.tolist() == ["a/deeper/z", "a/x"]  # tree order
    with pytest.raises(FileNotFoundError, match=r"under sources\.midi_dir\.subset 'nowhere'"):
        _fetch("midi_dir", tmp_path / "again", url=str(own), subset="nowhere")


def test_params_reject_an_unknown_metadata_field():
    with pytest.raises(ParamsError, match=r"sources\.midi_dir\.columns: unknown field 'tilte'"):
        from_dict(SourceParams, {"columns": {"tilte": "name"}}, "sources.midi_dir")


# --------------------------------------------------------------------------- piano-midi.de


@needs_shared
def test_piano_midi_de_from_a_local_copy_uses_metadata_and_never_sleeps(tmp_path):
    copy, table = archives.piano_midi_de_folder(tmp_path / "piano-midi.de")
    start = time.monotonic()
    manifest = _fetch("piano_midi_de", tmp_path, url=str(copy), delay_s=SLOW_DELAY_S)
    assert time.monotonic() - start < SLOW_DELAY_S / 3
    assert len(manifest) == 12 and set(manifest.status) == {"ok"}
    assert manifest.path.tolist() == sorted(manifest.path, key=lambda p: Path(p).parts)
    by_file = table.assign(key=table.midi.str.lower()).set_index("key")
    for row in manifest.itertuples():
        meta = by_file.loc[row.path.lower()]
        assert (row.title, row.composer, row.year) == (meta.title, meta.composer, meta.year)
        assert row.piece_id == f"{meta.composer.lower()}/{Path(row.path).stem}"
    assert "Piano_Sonata_in_D_major_D_850_Opus_53_1" in set(manifest.title)
    raw = tmp_path / "raw" / "piano_midi_de"
    assert _files(raw) == sorted(["manifest.csv", "source.json", *manifest.path])
    limited = _fetch("piano_midi_de", tmp_path / "l", url=copy.as_uri(), limit=3)
    assert limited.piece_id.tolist() == manifest.piece_id[:3].tolist()
    assert len(_files(tmp_path / "l" / "raw" / "piano_midi_de" / "midis")) == 3


def test_piano_midi_de_copy_without_metadata_and_missing_paths(tmp_path):
    copy = tmp_path / "pmd"
    rng = np.random.default_rng(3)
    write_score(copy / "midis" / "Bach" / "bach_846.mid", chorale_like(rng))
    manifest = _fetch("piano_midi_de", tmp_path, url=str(copy))
    assert manifest[["piece_id", "title", "composer"]].values.tolist() == [
        ["bach/bach_846", "bach_846", "Bach"]
    ]
    with pytest.raises(
        FileNotFoundError,
        match=r"sources\.piano_midi_de\.url: .*nowhere: no "
        r"such file or folder; expected a local copy of piano-midi\.de \(a "
        r"folder holding midis/<Composer>/\*\.mid and metadata\.csv\), or the "
        r"site's index page midis\.htm",
    ):
        _fetch("piano_midi_de", tmp_path, url=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"no midis/ folder in it"):
        _fetch("piano_midi_de", tmp_path, url=str(copy / "midis"))


def test_crawl_of_local_pages_never_sleeps(tmp_path):
    """The crawler reading a saved copy of the site (file:// index) loads no server."""
    site = tmp_path / "site"
    rng = np.random.default_rng(4)
    for composer in ("albeniz", "bach"):
        names = [f"{composer}{i}.mid" for i in range(2)]
        for name in names:
            write_score(site / "midis" / composer / name, chorale_like(rng))
        links = "".join(f'<a href="midis/{composer}/{n}">{n}</a>' for n in names)
        (site / f"{composer}.htm").write_text(f"<html>{links}</html>")
    (site / "midis.htm").write_text(
        '<html><a href="albeniz.htm">A</a><a href="bach.htm">B</a></html>'
    )
    start = time.monotonic()
    manifest = _fetch(
        "piano_midi_de", tmp_path, url=(site / "midis.htm").as_uri(), delay_s=SLOW_DELAY_S
    )
    assert time.monotonic() - start < SLOW_DELAY_S / 3
    assert manifest.piece_id.tolist() == [
        "albeniz/albeniz0",
        "albeniz/albeniz1",
        "bach/bach0",
        "bach/bach1",
    ]


# --------------------------------------------------------------------------- limit


def test_safe_extract_filter_keeps_every_check_and_budgets_what_it_extracts(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr(f"d/{i}.bin", bytes(400))
    archive = tmp_path / "a.zip"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchive, match="more than 1,000 bytes"):
        safe_extract(archive, tmp_path / "all", 1000)
    safe_extract(archive, tmp_path / "two", 1000, lambda name: name != "d/2.bin")
    assert _files(tmp_path / "two") == ["d/0.bin", "d/1.bin"]
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../evil.bin", b"x")
    with pytest.raises(UnsafeArchive, match=r"'\.\.' in a path is refused"):
        safe_extract(archive, tmp_path / "one", 10_000, lambda name: name == "d/0.bin")
    assert not (tmp_path / "one" / "d").exists()


@pytest.fixture(scope="module")
def site():
    if not DATASETS.is_dir():
        pytest.skip("needs ../shared/datasets (real corpora)")
    site = Site()
    site.files["/maestro/maestro-v2.0.0-midi.zip"] = archives.maestro_zip()
    site.files["/lpd/lpd_cleansed.tar.gz"] = archives.lpd_tar()
    site.files["/essen/master.zip"] = archives.essen_zip()
    with serve(site):
        yield site


@needs_shared
@pytest.mark.parametrize(
    ("source", "path", "suffix"),
    [
        ("maestro_v2", "/maestro/maestro-v2.0.0-midi.zip", ".midi"),
        ("lpd_cleansed", "/lpd/lpd_cleansed.tar.gz", ".npz"),
    ],
)
def test_limit_extracts_only_the_first_pieces(site, tmp_path, source, path, suffix):
    full = _fetch(source, tmp_path / "full", url=site.url(path))
    limited = _fetch(source, tmp_path / "limited", url=site.url(path), limit=3)
    assert limited.piece_id.tolist() == full.piece_id[:3].tolist()
    on_disk = _files(tmp_path / "limited" / "raw" / source / "files")
    assert [f for f in on_disk if f.endswith(suffix)] == sorted(
        str(Path(p).relative_to("files")) for p in limited.path
    )
    assert [f for f in on_disk if not f.endswith(suffix)] == (
        ["maestro-v2.0.0/maestro-v2.0.0.csv"] if source == "maestro_v2" else []
    )
    assert len(_files(tmp_path / "full" / "raw" / source / "files")) > len(on_disk)


@needs_shared
def test_essen_limit_extracts_only_the_first_kern_files_of_the_subset(site, tmp_path):
    manifest = _fetch(
        "essen",
        tmp_path,
        url=site.url("/essen/master.zip"),
        limit=2,
        subset="europa/deutschl/erk",
        workers=1,
    )
    assert len(manifest) == 2
    assert manifest.piece_id.str.startswith("europa/deutschl/erk/").all()
    kern = [f for f in _files(tmp_path / "raw" / "essen" / "files") if f.endswith(".krn")]
    assert len(kern) == 2
