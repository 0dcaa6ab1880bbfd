"""`cadenza paper`: the founding papers' own experiments, reproduced, with error bars.

`bench/papers/params.yaml` declares one model per experimental setting (the root params
schema: corpora, prepare, models); `bench/papers/papers.yaml` says which seeds each model runs
with and which figure of which paper it reproduces. `run_cell` trains one model with one seed
through the zoo's own trainer and scores it on every split; `table` sets the mean and standard
deviation over the seeds beside the published figure, and says whether the gap is more than
run-to-run noise. A reviewer reads one row per figure, with the command that reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Figure:
    """One published figure and the metric of ours that reproduces it.

    `metric` is a dotted path into a run's JSON: `valid.accuracy`, `test.nll`,
    `train.accuracy` (the trained model scored on its training split), `log.train_loss` (the
    last epoch's mean training loss, what Keras prints), `run.epochs` (epochs before early
    stopping). `published` is in the metric's own unit (accuracy as a fraction); None where
    the paper gives no number. `note` explains a gap larger than the noise, or why a model
    that is not in `run` (too long for the hardware at hand) has not run.
    """

    paper: str
    experiment: str
    setting: str
    model: str  # an entry of bench/papers/params.yaml `models:`
    metric: str
    published: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Papers:
    """`bench/papers/papers.yaml`."""

    seeds: list[int]  # every model runs once per seed (dvc.yaml's matrix)
    run: list[str]  # the models `dvc repro` runs, each once per seed
    figures: list[Figure]
    # per split: at most this many units (tokens, frames) scored, spread over the pieces;
    # absent or 0 = the whole split (paper 002 validated on ~250,000 symbols, tested on ~1 M)
    eval_units: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from cadenza.validation import check

        check(len(self.seeds) >= 3, "seeds", "error bars need at least 3 seeds")
        check(len(set(self.seeds)) == len(self.seeds), "seeds", "must be distinct")
        for f in self.figures:
            check(
                f.model in self.run or bool(f.note),
                "figures",
                f"{f.model!r} is not in `run`, and no note says why",
            )
            check(f.metric.split(".")[0] in {*SPLITS, "log", "run"}, "figures", f.metric)
        for split, cap in self.eval_units.items():
            check(split in SPLITS and cap >= 0, "eval_units", f"{split}: {cap}")
