"""What DVC knows about two revisions, read in one `Repo` session: the metrics diff, the
params.yaml values of both and the metrics files it could not read."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from dvc.repo import Repo

from cadenza.paths import PARAMS


@dataclass(frozen=True)
class Comparison:
    """Everything `cadenza compare` prints, read from DVC once."""

    a_rev: str
    b_rev: str
    diff: dict[str, dict[str, dict]]
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # flat key: (old, new)
    # file: {"missing" or "unreadable": [revisions]}
    errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def collect(
    project: str, a_rev: str, b_rev: str | None, files: list[str] | None = None
) -> Comparison:
    """The metrics diff ({file: {metric: {"old", "new", "diff"}}}, every metric included), the
    params.yaml values of both revisions and the metrics files DVC could not read, in one Repo
    session (DVC resolves experiment names as well as commits). `b_rev` None means the
    workspace; `files` None means every metrics file."""
    b_rev = b_rev or "workspace"
    with Repo(project) as repo:
        metrics = repo.metrics.diff(a_rev=a_rev, b_rev=b_rev, targets=files, all=True)
        params = repo.params.diff(a_rev=a_rev, b_rev=b_rev, all=True).get("diff", {})
    errors: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rev, failed in (metrics.get("errors") or {}).items():
        for path, err in (failed if isinstance(failed, dict) else {}).items():
            why = "missing" if isinstance(err, FileNotFoundError) else "unreadable"
            errors[path][why].append(rev)
    values = {
        key: (v.get("old"), v.get("new")) for key, v in (params.get(str(PARAMS)) or {}).items()
    }
    return Comparison(
        a_rev,
        b_rev,
        metrics.get("diff", {}),
        values,
        {path: dict(why) for path, why in errors.items()},
    )
