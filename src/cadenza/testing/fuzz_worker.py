"""Run MIDI files through prepare's per-file path, in a child process that may die.

Why a child process: symusic is C++, so a hostile file can segfault, hang or allocate what
it merely claims; none of that is an exception the parent could catch. The child reads one
path per line on stdin and answers one JSON line per file; it runs under an address-space
limit (RLIMIT_AS), and the parent puts a deadline on every file. When the child dies or
overruns, the file it was on is recorded as a crash, and a fresh child carries on from the
next file.

The per-file path is the one `cadenza.prepare.stage.prepare` takes: `parse_midi` (with the
"all" track filter) -> `encode_piece` (key, transposition, note columns, roll runs), then the
columns become an Arrow table, as the shards do. It ends in "ok" (a row) or "rejected" (a
`RejectedPiece` with its reason); anything else is a "crash".
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MEM_LIMIT = 2 << 30  # bytes of address space for the child (the seed files need ~400 MB)


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # "ok", "rejected", "crash"
    detail: str  # notes kept, the reject reason, or what went wrong


def process_one(path: str) -> tuple[str, str]:
    """(status, detail) of one file on prepare's path; raises only on a real crash."""
    import numpy as np
    import pyarrow as pa

    from cadenza.config import PrepareParams
    from cadenza.prepare.parse import RejectedPiece, parse_midi
    from cadenza.prepare.stage import encode_piece

    try:
        parsed = parse_midi(path, "all")
        piece, cols, roll = encode_piece(parsed, "fuzz/x", "train", PrepareParams())
    except RejectedPiece as err:
        return "rejected", str(err)
    table = pa.table(cols)  # what the shards hold
    for name in ("onset_beats", "duration_beats", "onset_s", "duration_s"):
        values = cols[name]
        if not np.all(np.isfinite(values)):
            raise AssertionError(f"non-finite {name} in an accepted piece")
    if np.any(cols["duration_beats"] < 0) or np.any(roll["end"] < roll["start"]):
        raise AssertionError("negative duration in an accepted piece")
    if np.any(cols["onset_beats"] < 0) or np.any(cols["onset_s"] < 0):
        raise AssertionError("negative onset in an accepted piece")
    if not (
        np.all((cols["pitch"] >= 0) & (cols["pitch"] <= 127))
        and np.all((cols["velocity"] >= 0) & (cols["velocity"] <= 127))
    ):
        raise AssertionError("pitch or velocity out of 0..127 in an accepted piece")
    return "ok", f"{table.num_rows} notes, {piece['n_steps']} steps"


def _child(mem_limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    for line in sys.stdin:
        path = line.rstrip("\n")
        try:
            status, detail = process_one(path)
        except MemoryError:
            status, detail = "crash", "MemoryError (over the address-space limit)"
        except Exception as err:  # noqa: BLE001 - exactly what the harness looks for
            status, detail = "crash", f"{type(err).__name__}: {err}"
        sys.stdout.write(json.dumps([status, detail]) + "\n")
        sys.stdout.flush()


def run_isolated(
    files: list[tuple[str, Path]], timeout_s: float = 20.0, mem_limit: int = MEM_LIMIT
) -> list[Outcome]:
    """Outcome of every (name, path), each file under a deadline and a memory limit."""
    results: list[Outcome] = []
    pending = list(files)
    src = str(Path(__file__).resolve().parents[2])  # the child imports this `cadenza`
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    while pending:
        child = subprocess.Popen(
            [sys.executable, "-m", "cadenza.testing.fuzz_worker", str(mem_limit)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        sel = selectors.DefaultSelector()
        assert child.stdout is not None and child.stdin is not None
        sel.register(child.stdout, selectors.EVENT_READ)
        try:
            while pending:
                name, path = pending[0]
                child.stdin.write(f"{path}\n")
                child.stdin.flush()
                deadline = time.monotonic() + timeout_s
                line = ""
                while not line and time.monotonic() < deadline:
                    if sel.select(timeout=max(deadline - time.monotonic(), 0.01)):
                        line = child.stdout.readline()
                        if not line:  # EOF: the child died
                            break
                pending.pop(0)
                if line:
                    status, detail = json.loads(line)
                    results.append(Outcome(name, status, detail))
                    continue
                if child.poll() is None:
                    child.kill()
                    child.wait()
                    results.append(Outcome(name, "crash", f"hang: over {timeout_s:.0f} s"))
                else:
                    results.append(
                        Outcome(name, "crash", f"child died, exit status {child.returncode}")
                    )
                break  # start a fresh child for the rest
        except BrokenPipeError:
            pending.pop(0)
            results.append(Outcome(name, "crash", "child died before reading the file"))
        finally:
            sel.close()
            if child.poll() is None:
                child.stdin.close()
                child.wait(timeout=30)
    return results


if __name__ == "__main__":
    _child(int(sys.argv[1]))
