"""`cadenza plots`: `dvc plots show` that renders offline.

DVC's HTML page loads vega, vega-lite and vega-embed from a CDN, so without internet it is
blank. vl-convert ships the three libraries as one JavaScript bundle; inlined into an HTML
template (DVC's `--html-template`, with the `{plot_divs}` placeholder and no `{scripts}`, so
no CDN tags are added) the page works from disk.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import vl_convert

TEMPLATE_HEAD = "<!doctype html><html><head><meta charset='utf-8'><title>Cadenza plots</title>"


def offline_template(path: Path) -> Path:
    """Write (once) an HTML template with vega, vega-lite and vega-embed inlined."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        bundle = vl_convert.javascript_bundle()
        path.write_text(f"{TEMPLATE_HEAD}<script>{bundle}</script></head>"
                        "<body>{plot_divs}</body></html>\n")
    return path


def show(project: Path, out: Path, template: Path) -> Path:
    """Run `dvc plots show` with the offline template; return the page it wrote."""
    subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--html-template",
                    str(offline_template(template).resolve()), "-o", str(out.resolve())],
                   cwd=project, check=True)
    return out / "index.html"
