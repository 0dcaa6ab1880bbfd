"""Time and memory of the polyphonic benchmark on long pieces; prints the ratio to whole pieces.

    python bench/bl_windows.py --midi-dir ../shared/datasets/piano-midi.de
    python bench/bl_windows.py --midi-dir PATH --model roll_made --epochs 1 --splits 87 12 25

Boulanger-Lewandowski's MuseData and Piano-midi.de pickles are not on this machine, so the
script makes one in their format from a real piano-midi.de copy: whole pieces at eighth-note
steps, `--splits` pieces drawn across the composers. On it, the benchmark's own `run` trains
the model of bench/bl/params.yaml for `--epochs` epochs (then scores test), twice, each in a
child process of its own so that peak memory is that run's: on the windows that
`cadenza benchmark bl --dataset piano_midi_de` trains on (params `windows:`), and on whole
pieces, the baseline. It prints seconds an epoch, peak memory and their ratios, and a bound on
a whole run: the model's epoch cap times the seconds an epoch, which carry a share of the test
pass, so the bound holds for any cap of at least `--epochs`.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from cadenza.benchmark import BenchmarkParams, load_bl, run
from cadenza.config import load_yaml_as
from cadenza.parallel import SPAWN
from cadenza.testing.archives import bl_pickle_from_midi
from cadenza.testing.checkout import ROOT

DATASET = "piano_midi_de"


def one_run(
    pickle_path: Path, params_file: Path, model: str, window: int, epochs: int
) -> tuple[dict, float]:
    """The benchmark's `run` for `epochs` epochs; its result and this process's peak RSS in
    MiB (a fresh process: ru_maxrss never goes down)."""
    params = load_yaml_as(params_file, BenchmarkParams)
    mp = params.models[model]
    mp = replace(mp, train=replace(mp.train, epochs=epochs))
    with tempfile.TemporaryDirectory() as tmp:
        result = run(
            DATASET,
            load_bl(pickle_path),
            model,
            mp,
            0,
            Path(tmp) / "result.json",
            params.transpose.get(model, 0),
            window,
        )
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path, required=True, help="piano-midi.de: midis/")
    parser.add_argument("--params", type=Path, default=ROOT / "bench" / "bl" / "params.yaml")
    parser.add_argument("--model", default="roll_made")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--splits", type=int, nargs=3, default=[87, 12, 25])
    args = parser.parse_args()
    params = load_yaml_as(args.params, BenchmarkParams)
    window, cap = params.windows[DATASET], params.models[args.model].train.epochs

    blob = bl_pickle_from_midi(args.midi_dir, 0.5, tuple(args.splits), 0, shuffle_seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        pickle_path = Path(tmp) / "Piano-midi.de.pickle"
        pickle_path.write_bytes(blob)
        data = load_bl(pickle_path)
        lengths = [len(p) for p in data["train"]]
        print(
            f"stand-in Piano-midi.de: {' / '.join(str(len(data[s])) for s in data)} pieces, "
            f"{sum(lengths):,} training frames (longest piece {max(lengths):,})"
        )
        measured = {}
        for label, w in (("windows", window), ("whole pieces", 0)):
            with ProcessPoolExecutor(1, mp_context=SPAWN) as pool:
                job = pool.submit(one_run, pickle_path, args.params, args.model, w, args.epochs)
                result, peak = job.result()
            per_epoch = result["seconds"] / args.epochs
            measured[label] = (per_epoch, peak)
            print(
                f"{args.model} on {label} ({w or 'none'}): {per_epoch:.1f} s an epoch with "
                f"test ({sum(lengths) / per_epoch:,.0f} training frames/s), peak RSS "
                f"{peak:.0f} MiB, on {result['device']}; a whole run of at most {cap} "
                f"epochs: under {cap * per_epoch / 3600:.2f} h"
            )
    (t_win, m_win), (t_whole, m_whole) = measured["windows"], measured["whole pieces"]
    print(
        f"ratio windows / whole pieces: time {t_win / t_whole:.2f}x, memory {m_win / m_whole:.2f}x"
    )


if __name__ == "__main__":
    main()
