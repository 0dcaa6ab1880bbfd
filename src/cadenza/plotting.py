"""Matplotlib's pyplot, on the file-only Agg backend, and the one way a figure is saved.

Why a module: servers and CI have no display, so the backend must be chosen before pyplot is
first imported. Every plotting module takes `plt` from here instead of repeating that dance
(and a lint exception) at its own top, and saves through `save_png`, so every PNG is written
atomically (a killed stage leaves no half-written image) and its figure is freed.
"""

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure  # the figure class alone does not choose a backend

from cadenza.io import atomic_path

matplotlib.use("Agg")

from matplotlib import pyplot as plt  # noqa: E402 - must follow matplotlib.use

__all__ = ["plt", "save_png"]


def save_png(fig: Figure, out: Path, dpi: int) -> Path:
    """Writes `fig` to `out` as a PNG atomically and closes it (pyplot keeps every open figure
    alive otherwise). The dpi is each caller's: it fixes the image's size and so its bytes."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return out
