"""`generate@<model>`: checkpoint -> N sampled pieces -> MIDI files.

Each sample continues a prompt taken from the start of a test piece (so the model is asked to
go on from real music it never trained on) and only the continuation is written, so the
metrics judge the model's own notes. Models that take no prompt (the VAE, the GANs) ignore
it. What a sample is (tokens, frames, notes) is the model family's business: every family's
`sample` returns notes.

Tempo: a sample is written at the tempo its beats were decoded at (`sample_bpm`), so its
seconds are the seconds the model meant.
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
from cadenza.models import SPECS, load_family
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
        raise RuntimeError(f"{prepared}: the test split is empty; no prompts to start from")
    piece_ids = sorted(prompts)
    generator = torch.Generator().manual_seed(seed)
    sample_fn = load_family(mp.family).sample
    bpm = sample_bpm(mp, params.bpm)
    rows = []
    with atomic_dir(out) as tmp, torch.inference_mode():
        for i in tqdm(range(params.n_samples), desc=f"generate {payload['name']}", unit="sample"):
            piece_id = piece_ids[int(torch.randint(len(piece_ids), (1,), generator=generator))]
            prompt = prompts[piece_id][: params.prompt_len]
            notes = sample_fn(model, mp, payload["info"], prompt, params, generator)
            name = f"sample_{i:03d}.mid"
            write_midi(notes, tmp / name, bpm)
            rows.append(
                {"file": name, "prompt_piece": piece_id, "n_notes": len(notes[2]), "bpm": bpm}
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


def sample_bpm(mp: ModelParams, bpm: float) -> float:
    """The tempo of a model's samples: `bpm` (generate.bpm) for models that count in beats.

    Models that count in seconds (Performance-RNN events, the note models) decode a second as
    `SECONDS_TO_BEATS` beats, that is at 120 bpm, so they are written at 120: at 100 they
    would play 20 % slow.
    """
    in_seconds = SPECS[mp.family].kind == "notes" or (
        mp.tokens is not None and mp.tokens.scheme == "event"
    )
    return 60.0 * SECONDS_TO_BEATS if in_seconds else bpm
