"""Paper 001's Keras epoch rebuilt from the Essen kern files: songs, windows, batches, `/` share.

    .venv/bin/python bench/paper001_epoch.py --kern ../shared/datasets/essen/europa/deutschl/erk

The paper prints `5660/5660` batches for an epoch and a training accuracy of 91.42 %. This
counts the windows its code makes of the `erk` songs (`cadenza.papers.epoch001`), prints the
batches of 64 beside the paper's 5,660, and how many of the targets are the `/` song
delimiter, and a bound on the accuracy over the other targets that the paper's 91.42 % implies.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from cadenza.papers.epoch001 import DELIMITER, keras_epoch, kern_durations, song_symbols

PAPER_BATCHES = 5660
PAPER_ACCURACY = 0.9142


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kern", type=Path, required=True, help="the erk folder of *.krn")
    args = parser.parse_args()
    files = sorted(args.kern.glob("*.krn"))
    if not files:
        raise SystemExit(f"no .krn files in {args.kern}")
    durations = [kern_durations(f) for f in tqdm(files, desc="parse kern")]
    lengths = [song_symbols(d) for d in durations]
    epoch = keras_epoch(lengths)
    unfiltered = keras_epoch([song_symbols(d, accepted=()) for d in durations])
    undelimited = keras_epoch(lengths, delimiter=0)
    free_share = epoch.free_targets / epoch.windows
    print(f"songs read {epoch.read}, kept by the duration filter {epoch.songs}")
    print(
        f"music symbols {epoch.symbols:,}; with {DELIMITER} '/' after each song, "
        f"{epoch.windows:,} windows of {DELIMITER} (stride 1), one target each"
    )
    print(
        f"batches of 64: {epoch.batches(64):,} (the paper: {PAPER_BATCHES:,}; "
        f"ratio {epoch.batches(64) / PAPER_BATCHES:.4f})"
    )
    print(
        f"other readings: no duration filter {unfiltered.batches(64):,} batches, "
        f"no '/' delimiter {undelimited.batches(64):,}"
    )
    print(
        f"'/' targets: {epoch.slash_targets:,} ({epoch.slash_targets / epoch.windows:.1%}); "
        f"a '/' after a '/': {epoch.free_targets:,} ({free_share:.1%})"
    )
    bound = (PAPER_ACCURACY - free_share) / (1 - free_share)
    print(
        f"the paper's {PAPER_ACCURACY:.2%} with every free '/' right leaves at least "
        f"{bound:.1%} on the other targets"
    )


if __name__ == "__main__":
    main()
