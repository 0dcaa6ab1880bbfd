"""Atomic file writes, hashing and small JSON/Parquet helpers.

Why: a run killed mid-write must never leave a half-written shard, checkpoint or report
where a later stage (or DVC's cache) would take it for a finished one. Every writer in
Cadenza therefore writes to a temporary path and renames it into place; on POSIX a rename
within one filesystem is atomic.

Where the temporary copy lives (issue #8): a SIGKILL skips every `finally`, so whatever temp
file a killed run had open stays behind. Inside a DVC project (an ancestor folder holds
`.dvc/`) temps therefore go to `<project>/.dvc/tmp/atomic/`, never beside the target: no
partial file is ever visible under `data/` or `reports/`, and none can be cached by DVC as
part of an output folder. Outside a project (tests, ad-hoc use) they go beside the target as
hidden `.<name>.XXXX.tmp`. Either way each temp's name is derived from its target, and a new
atomic write of a target first removes the temps that a killed write of the same target left
behind (a target has one writer at a time: DVC's lock and the stage layout guarantee it).
The temp folder must be on the target's filesystem for the rename to be atomic; when it is
not, the sibling is used.

File modes (issue #18): `mkstemp` creates 0600 files and `mkdtemp` 0700 folders, private even
under umask 022, and the rename kept those modes, so shards, reports and checkpoints were
unreadable by the group. Temps are therefore given the modes `open()` / `mkdir()` would have
given them: 0666 and 0777 less the umask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

TEMP_SUBDIR = Path(".dvc") / "tmp" / "atomic"
_TEMP_TAIL = re.compile(r"[a-z0-9_]{8}(\.old)?\.tmp")  # tempfile's 8 random characters


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path for `target`; rename it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder, prefix = temp_location(target)
    remove_stale_temps(folder, prefix)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:  # before the writer runs: a mode it sets itself (e.g. executable) is kept
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield a temporary directory; swap it in as `target` on success.

    The old `target` is first renamed away (atomic), then deleted after the swap, so a kill
    leaves either the old folder, the new one, or, killed between the two renames, the old
    one under its temporary name: never a mix. The next write of `target` puts that one back
    before anything else, so a second kill cannot lose it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder, prefix = temp_location(target)
    restore_swapped_out(folder, prefix, target)
    remove_stale_temps(folder, prefix)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=folder))
    os.chmod(tmp, 0o777 & ~current_umask())
    old = tmp.with_name(tmp.name[:-4] + ".old.tmp")
    try:
        yield tmp
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        if old.exists() and not target.exists():  # the swap failed: put the old one back
            os.replace(old, target)
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel allows.

    Why not just `os.umask`: it can only be read by setting it, and between the set and the
    restore any other thread (Arrow's, a DataLoader's) that creates a file gets it with the
    wrong mode. Linux (4.7+) shows the umask in /proc/self/status; the set-and-restore is the
    fallback elsewhere. Read at each write, not once at import: the umask may change later.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_location(target: Path) -> tuple[Path, str]:
    """(folder, name prefix) for temporary copies of `target` (see the module docstring)."""
    parent = target.parent.resolve()
    if TEMP_SUBDIR.as_posix() in parent.as_posix():  # inside a temp folder already: it goes
        return target.parent, f".{target.name}."  # away as a whole, no need to go further
    for root in (parent, *parent.parents):
        if (root / ".dvc").is_dir():
            folder = root / TEMP_SUBDIR
            folder.mkdir(parents=True, exist_ok=True)
            if os.stat(folder).st_dev != os.stat(parent).st_dev:
                break
            rel = (parent / target.name).relative_to(root)
            return folder, "." + "%".join(rel.parts) + "."
    return target.parent, f".{target.name}."


def restore_swapped_out(folder: Path, prefix: str, target: Path) -> bool:
    """Put back the old `target` that a kill between `atomic_dir`'s two renames left under
    its temporary name (only when `target` itself is missing)."""
    if target.exists():
        return False
    olds = [Path(e.path) for e in _temps_of(folder, prefix) if e.name.endswith(".old.tmp")]
    if not olds:
        return False
    os.replace(max(olds, key=lambda path: path.stat().st_mtime), target)
    return True


def remove_stale_temps(folder: Path, prefix: str) -> int:
    """Delete the temps a killed atomic write of the same target left in `folder`."""
    temps = _temps_of(folder, prefix)
    for entry in temps:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
    return len(temps)


def _temps_of(folder: Path, prefix: str) -> list[os.DirEntry]:
    """The temporary copies (new and swapped-out old) that writes of one target left."""
    return [
        entry
        for entry in os.scandir(folder)
        if entry.name.startswith(prefix) and _TEMP_TAIL.fullmatch(entry.name[len(prefix) :])
    ]


def write_json(path: Path | str, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested metrics as one level: {"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def write_parquet(path: Path | str, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd")


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
