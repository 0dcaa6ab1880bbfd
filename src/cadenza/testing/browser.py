"""Headless Chromium for the tests that must see a page as a browser draws it.

Why here: the listening page and the offline `dvc plots` page are both checked by opening
them from disk and reading the DOM after their scripts ran; one function keeps the quiet,
profile-isolated flags in one place. `CHROMIUM` is None where no browser is installed (the
tests skip, saying so).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def headless_dom(page: Path, profile: Path, *flags: str, budget_ms: int, timeout_s: float) -> str:
    """The DOM of `page` (opened by its file:// URL) after `budget_ms` of virtual time, with a
    fresh profile in `profile`, no background traffic and the caller's extra `flags`."""
    assert CHROMIUM is not None, "no chromium on PATH"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            *flags,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
