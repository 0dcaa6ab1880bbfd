"""`generate@<model>`: checkpoint -> N sampled pieces -> MIDI files.

Each sample continues a prompt taken from the start of a test piece (so the model is asked to
go on from real music it never trained on) and only the continuation is written, so the
metrics judge the model's own notes. Models that take no prompt (the VAE, the GANs) ignore
it. What a sample is (tokens, frames, notes) is the model family's business: every family's
`sample` returns notes.

Tempo: a sample is written at the tempo its beats were decoded at (`sample_bpm`), so its
seconds are the seconds the model meant.

Meter: a sample of a model that counts in beats is written in its prompt piece's main time
signature (`cadenza.meter.main_meter`), so that its bars, which EB, UPC, TD and the per-bar
features count, are as long as the test pieces' bars it is compared with (in 4/4, copies of
25 piano-midi.de pieces in other meters scored UPC 1.3 above the pieces themselves). The
first bar starts at the continuation's first beat: where that beat fell in the piece's bar is
not kept. Models that count in seconds have no bars to follow and are written in 4/4.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from cadenza.batches import pick_device
from cadenza.checkpoint import load_checkpoint
from cadenza.config import GenerateParams, ModelParams
from cadenza.data import load_units
from cadenza.io import atomic_dir
from cadenza.meter import main_meter, parse_meter
from cadenza.models import SPECS, load_family
from cadenza.prepare.shards import read_pieces
from cadenza.representations.midi import write_midi
from cadenza.representations.tokens import SECONDS_TO_BEATS

log = logging.getLogger(__name__)


def generate(
    ckpt: Path, prepared: Path, out: Path, params: GenerateParams, seed: int
) -> pd.DataFrame:
    device = pick_device()
    model, mp, payload = load_checkpoint(ckpt, device)
    prompts = load_units(prepared, "test", mp, seed)
    if not prompts:
        raise ValueError(
            f"{prepared}: the test split is empty, so there is no prompt to start from: add "
            "pieces, or raise prepare.test_fraction"
        )
    piece_ids = sorted(prompts)
    generator = torch.Generator().manual_seed(seed)
    sample_fn = load_family(mp.family).sample
    bpm = sample_bpm(mp, params.bpm)
    meters = {} if counts_in_seconds(mp) else prompt_meters(prepared)
    rows = []
    with atomic_dir(out) as tmp, torch.inference_mode():
        for i in tqdm(range(params.n_samples), desc=f"generate {payload['name']}", unit="sample"):
            piece_id = piece_ids[int(torch.randint(len(piece_ids), (1,), generator=generator))]
            prompt = prompts[piece_id][: params.prompt_len]
            notes = sample_fn(model, mp, payload["info"], prompt, params, generator)
            name = f"sample_{i:03d}.mid"
            num, den = meters.get(piece_id, (4, 4))
            write_midi(notes, tmp / name, bpm, time_signature=(num, den))
            rows.append(
                {
                    "file": name,
                    "prompt_piece": piece_id,
                    "n_notes": len(notes[2]),
                    "bpm": bpm,
                    "time_signature": f"{num}/{den}",
                }
            )
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "samples.csv", index=False)
    log.info(
        "wrote %d samples at %g bpm (%d notes in all) -> %s",
        len(rows),
        bpm,
        table.n_notes.sum(),
        out,
    )
    return table


def prompt_meters(prepared: Path) -> dict[str, tuple[int, int]]:
    """Each test piece's main time signature, by piece id."""
    pieces = read_pieces(prepared)
    test = pieces[pieces.split == "test"]
    return {
        piece_id: main_meter(parse_meter(text), end)
        for piece_id, text, end in zip(
            test.piece_id, test.time_signatures, test.duration_beats, strict=True
        )
    }


def sample_bpm(mp: ModelParams, bpm: float) -> float:
    """The tempo of a model's samples: `bpm` (generate.bpm) for models that count in beats.

    Models that count in seconds (Performance-RNN events, the note models) decode a second as
    `SECONDS_TO_BEATS` beats, that is at 120 bpm, so they are written at 120: at 100 they
    would play 20 % slow.
    """
    return 60.0 * SECONDS_TO_BEATS if counts_in_seconds(mp) else bpm


def counts_in_seconds(mp: ModelParams) -> bool:
    """Performance-RNN events and the note models decode time in seconds, not beats."""
    return SPECS[mp.family].kind == "notes" or (
        mp.tokens is not None and mp.tokens.scheme == "event"
    )
