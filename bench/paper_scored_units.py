"""How many units each paper model is scored on, per split, beside the split's size.

    .venv/bin/python bench/paper_scored_units.py --prepared bench/papers/data/prepared p002_final

docs/papers.md says paper 002 is scored on 250,000 valid and 1,000,000 test symbols, as the
paper's sizes, and paper 001 on every training symbol. This prints, for each model given (all of
`run:` by default), each split's units, how many of them `cadenza.paper run` scores under
`eval_units` (`cadenza.data.cap_units`), and how many the trainer's valid pass reads
(`train.max_valid_units`), so that the claim can be checked on any copy of the corpora.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cadenza.config import load_params, load_yaml_as
from cadenza.data import cap_units, load_units
from cadenza.papers import SPLITS, Papers

PAPERS_DIR = Path(__file__).parent / "papers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, required=True, help="the prepare stage's out")
    parser.add_argument("--params", type=Path, default=PAPERS_DIR / "params.yaml")
    parser.add_argument("--papers", type=Path, default=PAPERS_DIR / "papers.yaml")
    parser.add_argument("models", nargs="*", help="models to count (default: papers.yaml run:)")
    args = parser.parse_args()
    params = load_params(args.params)
    papers = load_yaml_as(args.papers, Papers)
    print("| model | split | units | cap | scored | share |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models or papers.run:
        mp = params.models[name]
        splits = {split: load_units(args.prepared, split, mp, params.seed) for split in SPLITS}
        caps = [(split, papers.eval_units.get(split, 0), splits[split]) for split in SPLITS]
        caps.append(("valid (trainer)", mp.train.max_valid_units, splits["valid"]))
        for split, cap, units in caps:
            scored = cap_units(units, cap, mp.train.seq_len + 1)
            total, kept = (sum(map(len, u.values())) for u in (units, scored))
            share = f"{kept / total:.1%}" if total else "-"
            print(f"| {name} | {split} | {total:,} | {cap:,} | {kept:,} | {share} |", flush=True)


if __name__ == "__main__":
    main()
