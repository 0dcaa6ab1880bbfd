"""`cadenza compare A B`: what changed between two commits or experiments, short enough to read.

DVC computes the diffs (`Repo.metrics.diff`, `Repo.params.diff`, in `read`); this package decides
what a reader needs from them (`values`, `rows`, `header`, `render`):

- only metrics that changed at 4 significant digits (float noise is no change), one section
  per metrics file (a model, the reference data, a benchmark run), `--all` for the rest;
- which way is better: lower for losses and divergences, higher for accuracy and overlap,
  and, for the music metrics (EB, UPC, polyphony, ...), closer to the test data's value, since
  a model should sound like the music it learned from, not maximise the pitch classes it uses;
- config is not a metric: strings (`dataset: jsb`, `trained_on`) and a benchmark's recorded
  `params.*` are shown as settings when they differ, never as rows with a `nan` change;
- a header that warns when the two revisions did not measure the same thing: other corpora,
  prepare params, training profile or seed, since then a metric's change is not the model's.
"""

from cadenza.compare.read import Comparison, collect
from cadenza.compare.render import render

__all__ = ["Comparison", "collect", "render"]
