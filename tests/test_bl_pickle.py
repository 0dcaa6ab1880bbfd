"""The B-L pickles are read with a no-code unpickler (issue 18, item 1): a downloaded pickle
that names any global runs nothing, through the reader and through a real fetch from a
loopback server; a wrong shape is refused naming the split, piece and step; the published
files load to exactly what `pickle.load` gives."""

from __future__ import annotations

import copyreg
import hashlib
import os
import pickle

import pandas as pd
import pytest

from cadenza.config import SourceParams
from cadenza.prepare.readers import read_bl
from cadenza.sources import bl_pickle
from cadenza.sources.bl_pickle import BLPickleError
from cadenza.sources.fetch import fetch_source
from cadenza.testing.checkout import SHARED
from cadenza.testing.loopback import Site, serve

BL = SHARED / "datasets" / "boulanger2012"
needs_bl = pytest.mark.skipif(not BL.exists(), reason=f"{BL} is absent (see ../shared)")
GOOD = {"train": [[[60, 64], [60, 64, 67]], [[], [72]]], "valid": [[[48]]], "test": [[[50]]]}


class _System:
    """Pickles as a call of os.system: what a tampered mirror would serve."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Exec:
    """Pickles as a call of builtins.exec on Python source."""

    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return exec, (self.source,)


def _touch(marker) -> bytes:
    return f"touch {marker}".encode()


def _payloads(marker) -> dict[str, bytes]:
    """Every opcode route to code, each creating `marker` when unpickled by `pickle.load`."""
    touch = _touch(marker)
    wrapped = {"train": [[[_System(f"touch {marker}")]]], "valid": [], "test": []}
    return {
        "os.system, protocol 0 (GLOBAL + REDUCE)": pickle.dumps(_System(f"touch {marker}"), 0),
        "os.system, protocol 2": pickle.dumps(_System(f"touch {marker}"), 2),
        "os.system, protocol 4 (STACK_GLOBAL)": pickle.dumps(_System(f"touch {marker}"), 4),
        "builtins.exec": pickle.dumps(_Exec(f"open({str(marker)!r}, 'w').close()"), 2),
        "inside the published shape": pickle.dumps(wrapped, 2),
        # hand-written opcodes: GLOBAL then REDUCE
        "GLOBAL/REDUCE": b"cos\nsystem\n(S'" + touch + b"'\ntR.",
        # INST: class and arguments in one opcode
        "INST": b"(S'" + touch + b"'\nios\nsystem\n.",
        # OBJ: the callable from GLOBAL, called with the marked arguments
        "OBJ": b"(cos\nsystem\nS'" + touch + b"'\no.",
        # STACK_GLOBAL: module and name from the stack (protocol 4)
        "STACK_GLOBAL/REDUCE": (
            b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c" + bytes([len(touch)]) + touch + b"\x85R."
        ),
    }


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "pwned"


def test_the_payloads_are_live(tmp_path):
    """The control: `pickle.loads` on each payload does create its marker (so the refusals
    below are the reader's doing, not dead payloads)."""
    for i, name in enumerate(_payloads(tmp_path)):
        marker = tmp_path / f"m{i}"
        raw = _payloads(marker)[name]
        pickle.loads(raw)  # noqa: S301 - our own payload, to show it is live
        assert marker.exists(), name


@pytest.mark.parametrize("name", list(_payloads("x")))
def test_a_malicious_pickle_runs_nothing(tmp_path, marker, name):
    path = tmp_path / "evil.pickle"
    path.write_bytes(_payloads(marker)[name])
    with pytest.raises(
        BLPickleError,
        match=r"evil\.pickle: refused: the pickle names the "
        r"global (os|posix|builtins|__builtin__)\.(system|exec)",
    ):
        bl_pickle.load(path)
    assert not marker.exists()


def test_extension_registry_and_persistent_ids_are_refused(tmp_path, marker):
    """EXT1 (copyreg's extension codes) and PERSID reach code without GLOBAL: refused too."""
    path = tmp_path / "ext.pickle"
    copyreg.add_extension("os", "system", 0xF0)
    try:
        path.write_bytes(b"\x80\x02\x82\xf0(S'" + _touch(marker) + b"'\ntR.")
        with pytest.raises(BLPickleError, match=r"names the global os\.system"):
            bl_pickle.load(path)
    finally:
        copyreg.remove_extension("os", "system", 0xF0)
    path.write_bytes(b"Pevil\n.")
    with pytest.raises(BLPickleError, match=r"ext\.pickle: refused: .*persistent id"):
        bl_pickle.load(path)
    assert not marker.exists()


def test_a_malicious_pickle_is_refused_by_prepares_reader(tmp_path, marker):
    path = tmp_path / "MuseData.pickle"
    path.write_bytes(_payloads(marker)["os.system, protocol 2"])
    with pytest.raises(BLPickleError, match="names the global"):
        read_bl(path, "train", 0, 0.5)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"train": [], "valid": []},
            r"expected exactly the splits .*got the keys \['train', 'valid'\] \(list\)",
        ),
        ([[[60]]], r"expected a dict of splits .*got list"),
        (
            {**GOOD, "valid": [[[48]], [[60], [61, 300]]]},
            r"split 'valid', piece 1, step 1: 300 \(int\) is not a pitch \(an int in 0\.\.127\)",
        ),
        (
            {**GOOD, "test": ["C major chord"]},
            r"split 'test', piece 0 is 'C major chord' \(str\), not a list of time steps",
        ),
        (
            {**GOOD, "train": [[[60], 61]]},
            r"split 'train', piece 0, step 1 is 61 \(int\), not a list",
        ),
        ({**GOOD, "train": [[[60.0]]]}, r"60\.0 \(float\) is not a pitch"),
        ({**GOOD, "train": [[[True]]]}, r"True \(bool\) is not a pitch"),
        ({**GOOD, "test": [[[10**5000]]]}, r"step 0: \(an int of 16,610 bits\) is not a pitch"),
        ({**GOOD, "train": [{10**5000}]}, r"split 'train', piece 0 is \(a set too large to show\)"),
        ({**GOOD, 10**5000: []}, r"got the keys \(a list too large to show\)"),
        (
            {**GOOD, "train": {"a": 1}},
            r"split 'train' is \{'a': 1\} \(dict\), not a list of pieces",
        ),
    ],
)
def test_a_wrong_structure_names_the_place(tmp_path, data, message):
    path = tmp_path / "bad.pickle"
    path.write_bytes(pickle.dumps(data, 4))  # 4: sets without a global
    with pytest.raises(BLPickleError, match=message) as err:
        bl_pickle.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", r"not a readable pickle: UnpicklingError"),
        (pickle.dumps(GOOD, 2)[:40], r"not a readable pickle"),
        (pickle.dumps(GOOD, 2) + b"junk", r"bytes follow the pickle's STOP opcode"),
        (b"", r"not a readable pickle: EOFError"),
    ],
)
def test_html_truncated_and_padded_files_are_refused(tmp_path, raw, message):
    path = tmp_path / "JSB Chorales.pickle"
    path.write_bytes(raw)
    with pytest.raises(BLPickleError, match=message):
        bl_pickle.load(path)


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    path = tmp_path / "huge.pickle"
    with open(path, "wb") as fh:  # sparse: no real disk or memory used
        fh.truncate(bl_pickle.MAX_BYTES + 1)
    with pytest.raises(BLPickleError, match=r"huge\.pickle: refused: 268,435,457 bytes, over"):
        bl_pickle.load(path)


def test_a_piece_over_the_step_limit_is_refused(tmp_path):
    """Shared references make a long piece cheap in bytes; its roll would not be."""
    step = [60]
    data = {**GOOD, "train": [[step] * (bl_pickle.MAX_PIECE_STEPS + 1)]}
    path = tmp_path / "long.pickle"
    path.write_bytes(pickle.dumps(data, 2))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(BLPickleError, match=r"split 'train', piece 0: 200,001 time steps, over"):
        bl_pickle.load(path)


def test_a_good_pickle_loads_as_plain_data(tmp_path):
    path = tmp_path / "good.pickle"
    path.write_bytes(pickle.dumps(GOOD, 2))
    assert bl_pickle.load(path) == GOOD
    with pytest.raises(BLPickleError, match=r"48 \(int\) is not a pitch \(an int in 50\.\.127\)"):
        bl_pickle.load(path, range(50, 128))


@needs_bl
@pytest.mark.parametrize(
    ("file", "pieces"),
    [
        ("JSB Chorales.pickle", (229, 76, 77)),
        ("Nottingham.pickle", (694, 173, 170)),
    ],
)
def test_the_published_pickles_load_as_pickle_load_did(file, pieces):
    data = bl_pickle.load(BL / file)
    with open(BL / file, "rb") as fh:  # the trusted local copy, for the comparison only
        assert data == pickle.load(fh, encoding="latin1")  # noqa: S301
    assert tuple(len(data[s]) for s in bl_pickle.SPLITS) == pieces


def _fetch(name: str, url: str, tmp_path, sha256: str = ""):
    return fetch_source(
        name,
        tmp_path / "raw" / name,
        tmp_path / "cache",
        SourceParams(url=url, sha256=sha256, retries=0),
    )


def test_fetch_refuses_a_malicious_mirror_and_forgets_it(tmp_path, marker):
    """`cadenza fetch bl_musedata` (no pinned hash) from a mirror serving a payload: refused
    naming the source and URL, nothing run, nothing written, and the cached download gone so
    the next fetch asks the server again."""
    site = Site()
    site.files["/bl/MuseData.pickle"] = _payloads(marker)["inside the published shape"]
    with serve(site):
        url = site.url("/bl/MuseData.pickle")
        for attempt in (1, 2):
            with pytest.raises(
                BLPickleError,
                match=rf"bl_musedata: {url} is not a "
                r"Boulanger-Lewandowski pickle .*deleted it from the download "
                r"cache, so the next run downloads it again: .*names the global (os|posix)\.system",
            ):
                _fetch("bl_musedata", url, tmp_path)
            assert len(site.requests) == attempt  # downloaded again: the bad copy was dropped
    assert not marker.exists()
    assert not (tmp_path / "raw" / "bl_musedata").exists()
    cached = tmp_path / "cache" / "MuseData.pickle"
    assert not cached.exists()
    assert not cached.with_name("MuseData.pickle.sha256").exists()


def test_fetch_bl_jsb_from_an_env_mirror_with_its_hash_runs_nothing(tmp_path, marker, monkeypatch):
    """JSB's registry pins the publisher's hash; a mirror's own `sha256:` gets past that
    check, and the unpickler still refuses."""
    raw = _payloads(marker)["STACK_GLOBAL/REDUCE"]
    site = Site()
    site.files["/JSB%20Chorales.pickle"] = raw
    with serve(site):
        url = site.url("/JSB%20Chorales.pickle")
        monkeypatch.setenv("CADENZA_MIRROR_BL_JSB", url)
        with pytest.raises(BLPickleError, match=rf"bl_jsb: {url} is not"):
            _fetch("bl_jsb", "", tmp_path, hashlib.sha256(raw).hexdigest())
    assert not marker.exists()
    assert not (tmp_path / "cache" / "JSB Chorales.pickle").exists()


def test_fetch_never_deletes_a_users_own_local_copy(tmp_path, marker):
    local = tmp_path / "mine" / "MuseData.pickle"
    local.parent.mkdir()
    local.write_bytes(_payloads(marker)["os.system, protocol 2"])
    with pytest.raises(
        BLPickleError,
        match=r"bl_musedata: .*MuseData\.pickle is not .*left "
        r"the file in place: .*names the global (os|posix)\.system",
    ):
        _fetch("bl_musedata", str(local), tmp_path)
    assert local.exists() and not marker.exists()


def test_fetch_of_a_good_mirror_writes_the_pieces(tmp_path):
    site = Site()
    site.files["/MuseData.pickle"] = pickle.dumps(GOOD, 2)
    with serve(site):
        manifest = pd.read_csv(_fetch("bl_musedata", site.url("/MuseData.pickle"), tmp_path))
    assert manifest.split.value_counts().to_dict() == {"train": 2, "valid": 1, "test": 1}
    assert (tmp_path / "raw" / "bl_musedata" / "files" / "MuseData.pickle").is_file()
