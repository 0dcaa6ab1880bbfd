"""The project paths that are not stage outputs: command defaults and files read by name.

Stage inputs and outputs are written once, in dvc.yaml, and reach the commands as arguments;
they are not here. What is here is every other path Cadenza knows by name, relative to the
project folder, so that a command's default and the flow that repeats it cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")  # every setting; validated by `load_params`
SWEEPS = Path("sweeps.yaml")  # the hyper-parameter sweeps, by name
SWEEP_REPORTS = Path("reports", "sweeps")  # one folder per sweep: table, plot, summary
DOWNLOAD_CACHE = Path(".cache", "downloads")  # downloads kept across runs (the B-L pickles)
AUDIO = Path("data", "audio")  # the render stage's clips: <model>/ and real/
LISTENING_TEST = Path("listening_test")  # the folder handed to listeners
LISTENING_KEY = Path("listening_key.json")  # which clip is which: kept away from listeners
LISTENING_RESULT = Path("reports", "listening.json")  # `listening-test analyze`, for the report
DVC_PLOTS = Path("dvc_plots")  # the offline `dvc plots show` page
PREFECT_HOME = Path(".state", "prefect")  # Prefect's database and logs, inside the project


def sweep_reports(name: str) -> Path:
    """The folder of sweep `name`'s table, plot and summary."""
    return SWEEP_REPORTS / name
