"""Matplotlib's pyplot, on the file-only Agg backend.

Why a module: servers and CI have no display, so the backend must be chosen before pyplot is
first imported. Every plotting module takes `plt` from here instead of repeating that dance
(and a lint exception) at its own top.
"""

import matplotlib

matplotlib.use("Agg")

from matplotlib import pyplot as plt  # noqa: E402 - must follow matplotlib.use

__all__ = ["plt"]
