"""Offline-safe settings for DVC and Prefect, set by Cadenza itself, not by the user.

Must run before `prefect` is imported: Prefect reads its settings at import time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cadenza.paths import PREFECT_HOME

ANALYTICS_OFF = {
    "DVC_NO_ANALYTICS": "1",  # else every dvc command spawns a daemon that dials out
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def venv_first(path: str) -> str:
    """`path` (a PATH value) with this interpreter's folder first: stage commands are a bare
    `cadenza ...` and queue workers a bare `dvc`, which must be this environment's even when
    it is not activated. Unchanged when that folder is already first."""
    bin_dir = str(Path(sys.executable).parent)
    if path.split(os.pathsep)[0] == bin_dir:
        return path
    return os.pathsep.join([bin_dir, path])


def analytics_off() -> None:
    """Every `cadenza` command runs this first; a user's own setting wins."""
    for key, value in ANALYTICS_OFF.items():
        os.environ.setdefault(key, value)


def apply_offline_settings(project: Path) -> None:
    """Before a flow: Prefect's state inside the project, and time for its first start."""
    analytics_off()
    defaults = {
        "PREFECT_HOME": str(project.resolve() / PREFECT_HOME),
        # the first start of the ephemeral server runs migrations; 20 s can time out
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # Prefect won't
    os.environ["PATH"] = venv_first(os.environ.get("PATH", ""))
