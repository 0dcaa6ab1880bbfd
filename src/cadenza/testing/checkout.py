"""Where the harness finds the project and the real datasets: a source checkout.

The harness is installed editable (`pip install -e .`), so this file lies in the checkout,
at src/cadenza/testing/; the real copies of the published datasets are in ../shared beside
it (absent on a machine without them: the tests that need them skip).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the checkout: params.yaml, dvc.yaml, tests/
SHARED = ROOT.parent / "shared"
DATASETS = SHARED / "datasets"
