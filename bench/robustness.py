"""Robustness benchmark: fuzzed MIDI, SIGKILLs mid-run, hostile servers, damaged checkpoints.

    python bench/robustness.py                        # 20,000 random mutants, 5 kills a stage
    python bench/robustness.py --random 2000 --kills 1    # a quick look

Prints:
  * inputs tried, and how each ended: parsed (a row), rejected with a reason, or crashed
    (a Python error other than a rejection, a segfault, over the 2 GB address-space limit, or
    over the per-file deadline). Crashes must be 0. Each input runs in a child process
    (`cadenza.testing.fuzz_worker`), so a crash is counted, not fatal;
  * pieces lost from the good files: the real prepare stage over the good files alone
    (the baseline run), then over the same files mixed with mutants; every piece of the
    baseline must still be there (must be 0);
  * kill/resume trials: `cadenza fetch` (loopback HTTP, when ../shared/datasets has
    MAESTRO), `prepare` and `train` SIGKILLed at seeded random points (the first of each at
    the moment it writes an output), then re-run; a trial passes when no partial file was
    visible and the re-run's outputs equal an uninterrupted run's (bytes; training: weights
    with tolerance 0);
  * hostile servers (loopback HTTP): a slow drip, a garbage status line, an HTML page
    instead of the data, a transfer cut short without Content-Length, a malicious pickle;
    each must end in an error naming the URL (or a retry that gets the published bytes),
    with the last good fetch untouched and nothing bad left in the download cache;
  * checkpoint bit flips: 1-16 random bytes of a real checkpoint changed, 2,000 times; every
    copy must be refused naming the file or load with unchanged content (never other
    content, never a crash);
  * ratio: the guarded parse (framing check + symusic + time checks) against a bare symusic
    parse of the same good files, both timed in this run.
The harness (mutators, fuzz worker, loopback server, kill trials) is `cadenza.testing`; the CI
tests (`tests/test_fuzz.py`,
`tests/test_faults.py`) run the same code on fewer inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import symusic

from cadenza.config import PrepareParams
from cadenza.prepare.parse import RejectedPiece, check_midi_bytes, parse_midi
from cadenza.prepare.stage import prepare
from cadenza.sources.fetch import write_manifest
from cadenza.sources.registry import Source
from cadenza.testing import faults, mutate
from cadenza.testing.checkout import DATASETS
from cadenza.testing.corpora import snapshot
from cadenza.testing.fuzz_worker import run_isolated
from cadenza.testing.loopback import Site, serve

GOOD_DIR = DATASETS / "piano-midi.de" / "midis"
BENCH_SOURCE = Source(
    name="bench", layout="maestro", description="", license="", citation="", track_filter="all"
)


def fuzz(
    seeds: list[bytes], n_random: int, seed: int, work: Path
) -> tuple[list, list[tuple[str, Path]]]:
    cases = mutate.mutants(seeds, random.Random(seed), n_random)
    files = []
    for i, (name, data) in enumerate(cases):
        path = work / f"{i:06d}.mid"
        path.write_bytes(data)
        files.append((name, path))
    return run_isolated(files, timeout_s=20.0), files


def prepare_pieces(files: list[Path], work: Path) -> set[str]:
    """The real stage over `files` (one source); the piece ids it keeps."""
    raw = work / "raw" / "bench"
    raw.mkdir(parents=True)
    rows = [
        {"piece_id": f"{i:06d}", "format": "midi", "path": str(p.resolve()), "status": "ok"}
        for i, p in enumerate(files)
    ]
    write_manifest(raw, rows, BENCH_SOURCE)
    prepare(raw.parent, ["bench"], work / "prepared", PrepareParams())
    return set(pd.read_parquet(work / "prepared" / "pieces.parquet").piece_id)


def lost_pieces(good: list[Path], mutant_files: list[Path], work: Path) -> tuple[int, int]:
    """(pieces of the good files alone, how many of them are missing when mutants join)."""
    baseline = prepare_pieces(good, work / "baseline")
    mixed = prepare_pieces(good + mutant_files, work / "mixed")
    return len(baseline), len(baseline - mixed)


def kill_trials(kills: int, work: Path) -> tuple[int, int, list[str]]:
    """(passed, tried, failures) over fetch, prepare and train."""
    import hashlib

    passed, tried, failures = 0, 0, []

    def trial(stage: str, fn) -> None:
        nonlocal passed, tried
        tried += 1
        try:
            fn()
            passed += 1
        except AssertionError as err:
            failures.append(f"{stage}: {str(err)[:200]}")

    if (DATASETS / "maestro-v2.0.0").is_dir():
        from cadenza.testing import archives

        site = Site()
        data = archives.maestro_zip(per_split=2)
        site.files["/m.zip"], site.rate["/m.zip"] = data, len(data) // 2
        with serve(site):
            project = faults.make_project(
                work / "fetch",
                {
                    "maestro_v2": {
                        "url": site.url("/m.zip"),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
                },
            )
            args = [
                "fetch",
                "maestro_v2",
                "--out",
                "data/raw/maestro_v2",
                "--cache",
                ".cache/downloads",
            ]
            out = project / "data/raw/maestro_v2"
            full_s = faults.run_cli(args, project)
            reference = snapshot(out)
            cached = project / ".cache/downloads/maestro-v2.0.0-midi.zip"

            def fresh_fetch() -> None:  # keeps any .part: a killed download resumes
                cached.unlink(missing_ok=True)
                shutil.rmtree(out, ignore_errors=True)

            rng = random.Random(1)
            for k in range(kills):
                trial(
                    "fetch",
                    lambda k=k: _one_kill(
                        faults,
                        args,
                        project,
                        full_s,
                        rng,
                        k,
                        lambda: None if not out.exists() else _same(snapshot(out), reference),
                        lambda: _same(snapshot(out), reference),
                        fresh_fetch,
                    ),
                )
    project = faults.make_toy_project(work / "toy")
    out = project / "data/prepared"
    full_s = faults.run_cli(faults.PREPARE, project)
    reference = snapshot(out)
    rng = random.Random(2)
    for k in range(kills):
        trial(
            "prepare",
            lambda k=k: _one_kill(
                faults,
                faults.PREPARE,
                project,
                full_s,
                rng,
                k,
                lambda: None if not out.exists() else _same(snapshot(out), reference),
                lambda: _same(snapshot(out), reference),
                lambda: shutil.rmtree(out, ignore_errors=True),
            ),
        )
    import torch

    ckpt = project / "data/models/chord_lstm/ckpt.pt"
    log = project / "reports/train/chord_lstm.csv"
    full_s = faults.run_cli(faults.TRAIN, project)
    ref_state = torch.load(ckpt, weights_only=True)["state_dict"]
    ref_log = pd.read_csv(log)[faults.LOG_COLUMNS]

    def same_weights() -> None:
        got = torch.load(ckpt, weights_only=True)["state_dict"]
        assert all(torch.equal(got[k], v) for k, v in ref_state.items()), "weights differ"
        pd.testing.assert_frame_equal(pd.read_csv(log)[faults.LOG_COLUMNS], ref_log)

    def from_scratch() -> None:
        shutil.rmtree(ckpt.parent, ignore_errors=True)
        log.unlink(missing_ok=True)

    rng = random.Random(3)
    for k in range(kills):
        trial(
            "train",
            lambda k=k: _one_kill(
                faults,
                faults.TRAIN,
                project,
                full_s,
                rng,
                k,
                lambda: None,
                same_weights,
                from_scratch,
            ),
        )
    return passed, tried, failures


def _one_kill(faults, args, project, full_s, rng, k, after_kill, after_rerun, reset) -> None:
    """Trial 0 kills mid-write; the others at a random point, half from a clean start."""
    if k == 0 or rng.random() < 0.5:
        reset()
    delay = None if k == 0 else rng.uniform(0.15, 1.0) * full_s
    faults.kill_and_rerun(args, project, delay, after_kill, after_rerun)


def _kind(reason: str) -> str:
    """A reject reason without its numbers: 'chunk 3 (b'MTrk') claims 2,147,483,647 ...'
    and 'chunk 0 ... claims 9 ...' are one kind."""
    if " claims " in reason:
        return "chunk length beyond the file"
    head, _, rest = reason.partition(": ")
    if head == "unreadable MIDI":  # symusic's own message, or the framing check's
        head = rest.removeprefix("MiniMidi: ").split("!")[0].split(":")[0]
    return re.sub(r"[\d,]+", "N", head)[:48]


def _same(got: dict, want: dict) -> None:
    assert got == want, "outputs differ from the uninterrupted run"


def parse_ratio(good: list[Path], repeat: int = 3) -> tuple[float, float, float]:
    """(bare symusic parse, the framing check, the whole guarded parse_midi) in seconds,
    best of `repeat`, over the same files."""
    blobs = [p.read_bytes() for p in good]
    times = []

    def bare() -> None:
        for b in blobs:
            symusic.Score.from_midi(b)

    def framing() -> None:
        for b in blobs:
            check_midi_bytes(b)

    def guarded() -> None:
        for p in good:
            _parse(p)

    for fn in (bare, framing, guarded):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        times.append(best)
    return times[0], times[1], times[2]


def _parse(path: Path) -> None:
    with contextlib.suppress(RejectedPiece):
        parse_midi(path, "all")


# --------------------------------------------------------------------------- hostile network


class _Payload:
    """Unpickling this would run `touch <marker>`: the malicious-pickle case's payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch '{self.marker}'",))


def network_trials(work: Path) -> list[tuple[str, bool, str]]:
    """(case, passed, what happened) for each hostile-server case, through the real downloader
    and fetch stage on a loopback server. A case passes when the fetch fails with an error
    naming the URL (or, for a transfer cut once, the retry gets the published bytes), no bad
    byte is left in the download cache as a finished file, and the last good
    `data/raw/<source>/` (fetched first from a good server) is unchanged."""
    import pickle

    from cadenza.config import SourceParams
    from cadenza.sources.download import fetch_file
    from cadenza.sources.fetch import fetch_source

    good = pickle.dumps(
        {"train": [[[60, 64], [62]]] * 20, "valid": [[[60]]], "test": [[[67]]]}, protocol=2
    )
    marker = work / "pwned"

    def cut_once(site: Site, path: str) -> None:
        site.no_length.add(path)
        site.drop_after[path] = len(good) // 2

    cases: dict[str, Callable[[Site, str], None]] = {
        "slow drip (1 byte / 50 ms)": lambda site, path: site.drip.__setitem__(path, 0.05),
        "garbage status line": lambda site, path: site.bad_status.__setitem__(path, 100),
        "HTML page instead of data": lambda site, path: site.error_page.add(path),
        "transfer cut once, no Content-Length": lambda site, path: cut_once(site, path),
        "malicious pickle": lambda site, path: site.files.__setitem__(
            path, pickle.dumps({"train": [_Payload(marker)], "valid": [], "test": []})
        ),
    }
    results = []
    for i, (case, inject) in enumerate(cases.items()):
        site, folder = Site(), work / f"net{i}"
        path = "/bl/MuseData.pickle"
        site.files[path] = good
        out, cache = folder / "raw" / "bl_musedata", folder / "cache"
        with serve(site):
            params = SourceParams(url=site.url(path), retries=2)
            fetch_source("bl_musedata", out, cache, params)  # the last good fetch
            before = _tree(out)
            (cache / "MuseData.pickle").unlink()  # force a new download from the hostile server
            (cache / "MuseData.pickle.sha256").unlink()
            inject(site, path)
            start = time.perf_counter()
            try:
                if case.startswith(("slow", "garbage")):  # bench-sized waits: 0.5 s, not 30 s
                    fetch_file(
                        site.url(path),
                        cache,
                        "MuseData.pickle",
                        retries=2,
                        backoff_s=0.05,
                        min_rate=1024,
                        rate_window_s=0.5,
                    )
                else:
                    fetch_source("bl_musedata", out, cache, params)
                message = "accepted"
            except Exception as err:  # noqa: BLE001 - what the user would see
                message = f"{type(err).__name__}: {err}"
        elapsed = time.perf_counter() - start
        cached = cache / "MuseData.pickle"
        lost = _tree(out) != before
        refused = message != "accepted" and site.url(path) in message
        refetched = message == "accepted" and len(site.requests) > 2  # cut once, then retried
        passed = (
            (refused or refetched)
            and not lost
            and not marker.exists()
            and not (cached.exists() and cached.read_bytes() != good)
        )
        if refetched:
            message = f"retried: {len(site.requests) - 1} requests, the published bytes kept"
        results.append((case, passed, f"{elapsed:.1f} s, {message.splitlines()[0][:150]}"))
    return results


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- checkpoints


def checkpoint_flips(n: int, seed: int, work: Path) -> Counter:
    """Flip 1-16 random bytes of a real checkpoint, `n` times (half anywhere in the file, half
    inside the tensor records), and load each copy as generate and evaluate do. Outcomes:
    refused (a ValueError naming the file), unchanged (the flip hit bytes no reader uses: the
    content hash and every tensor equal the original's), accepted with other content (must be
    0) and crashed (any other error, must be 0)."""
    import zipfile

    import torch

    from cadenza.checkpoint import load_checkpoint

    project = faults.make_toy_project(work / "ckpt")
    faults.run_cli(faults.PREPARE, project)
    faults.run_cli(faults.TRAIN, project)
    ckpt = project / "data/models/chord_lstm/ckpt.pt"
    original = ckpt.read_bytes()
    want = torch.load(ckpt, weights_only=True)
    with zipfile.ZipFile(ckpt) as zf:
        records = [
            (i.header_offset + 30 + len(i.filename) + len(i.extra), i.compress_size)
            for i in zf.infolist()
            if "/data/" in i.filename
        ]
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    bad = work / "flipped.pt"
    for trial in range(n):
        data = bytearray(original)
        if trial % 2:
            start, size = rng.choice(records)
            offset = start + rng.randrange(max(1, size - 16))
        else:
            offset = rng.randrange(len(data) - 16)
        for i in range(offset, offset + rng.randint(1, 16)):
            data[i] ^= rng.randrange(1, 256)
        bad.write_bytes(bytes(data))
        try:
            _, _, got = load_checkpoint(bad)
        except ValueError as err:
            outcomes["refused" if str(bad) in str(err) else "refused without the file name"] += 1
            continue
        except Exception as err:  # noqa: BLE001 - a crash is what this counts
            outcomes[f"crashed ({type(err).__name__})"] += 1
            continue
        same = got.get("sha256") == want["sha256"] and all(
            torch.equal(got["state_dict"][k], v) for k, v in want["state_dict"].items()
        )
        outcomes["unchanged" if same else "accepted with other content"] += 1
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=20_000, help="random mutants")
    parser.add_argument("--seeds", type=int, default=16, help="real files to mutate")
    parser.add_argument(
        "--mixed",
        type=int,
        default=2_000,
        help="mutants mixed into the good files for the lost-pieces check",
    )
    parser.add_argument("--kills", type=int, default=5, help="kill trials per stage")
    parser.add_argument(
        "--flips", type=int, default=2_000, help="bit-flipped checkpoint copies to load"
    )
    parser.add_argument("--no-network", action="store_true", help="skip the hostile servers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("cadenza").setLevel(logging.ERROR)  # the rejects: thousands of lines
    if not GOOD_DIR.is_dir():
        sys.exit(f"needs {GOOD_DIR} (see ../shared/datasets/README.md)")
    seeds = [p.read_bytes() for p in mutate.seed_files(DATASETS, args.seeds)]
    good = sorted(GOOD_DIR.rglob("*.mid"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "fuzz").mkdir()
        start = time.perf_counter()
        outcomes, files = fuzz(seeds, args.random, args.seed, work / "fuzz")
        fuzz_s = time.perf_counter() - start
        status = Counter(o.status for o in outcomes)
        reasons = Counter(_kind(o.detail) for o in outcomes if o.status == "rejected")
        print(
            f"== fuzz: {len(seeds)} real seed files, {len(mutate.STRUCTURED)} structured "
            f"mutators, {args.random:,} random mutants ({fuzz_s:.1f} s, "
            f"{len(outcomes) / fuzz_s:,.0f} inputs/s)"
        )
        print(f"inputs tried          : {len(outcomes):8,}")
        print(f"parsed (a row)        : {status['ok']:8,}")
        print(
            f"rejected with a reason: {status['rejected']:8,}"
            f"  (all with a reason: {all(o.detail for o in outcomes)})"
        )
        print(f"crashes               : {status['crash']:8,}   (must be 0)")
        for o in outcomes:
            if o.status == "crash":
                print(f"  CRASH {o.name}: {o.detail}")
        print(
            "top reject reasons    : "
            + "; ".join(f"{r} ({n:,})" for r, n in reasons.most_common(6))
        )
        mixed = [p for _, p in files if p.stat().st_size < 1 << 20][: args.mixed]
        start = time.perf_counter()
        kept, lost = lost_pieces(good, mixed, work / "stage")
        print(
            f"\n== prepare stage: {len(good)} good files (piano-midi.de) + {len(mixed):,} "
            f"mutants ({time.perf_counter() - start:.1f} s)"
        )
        print(f"good pieces, baseline : {kept:8,} of {len(good)} files")
        print(f"pieces lost to mutants: {lost:8,}   (must be 0)")
        bare_s, check_s, guarded_s = parse_ratio(good)
        print(
            f"ratio (framing check + bare parse) / bare parse: {(bare_s + check_s) / bare_s:5.3f}"
            f"x  (symusic {bare_s:.3f} s, framing check {check_s:.3f} s, {len(good)} files)"
        )
        print(
            f"ratio parse_midi / bare parse: {guarded_s / bare_s:5.2f}x  (parse_midi "
            f"{guarded_s:.3f} s: the check, the parse, beats and seconds, the time checks)"
        )
        if args.kills:
            start = time.perf_counter()
            passed, tried, failures = kill_trials(args.kills, work / "kills")
            print(f"\n== kills ({time.perf_counter() - start:.0f} s)")
            print(f"kill/resume trials passed: {passed} of {tried}")
            for failure in failures:
                print(f"  FAILED {failure}")
        if not args.no_network:
            print("\n== hostile servers (loopback HTTP; each case after a good fetch)")
            results = network_trials(work)
            for case, passed, what in results:
                print(f"{'ok  ' if passed else 'FAIL'} {case:36s} {what}")
            print(f"network cases passed: {sum(p for _, p, _ in results)} of {len(results)}")
        if args.flips:
            start = time.perf_counter()
            flips = checkpoint_flips(args.flips, args.seed, work)
            print(
                f"\n== checkpoint bit flips: {args.flips:,} copies "
                f"({time.perf_counter() - start:.0f} s)"
            )
            for outcome, count in flips.most_common():
                print(f"{outcome:28s}: {count:6,}")
            print("accepted with other content and crashes must be 0")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
