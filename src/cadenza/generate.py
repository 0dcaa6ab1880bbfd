"""`generate@<model>`: checkpoint -> N sampled pieces -> MIDI files.

Each sample continues a prompt taken from the start of a test piece (so the model is asked to
go on from real music it never trained on) and only the continuation is written, so the
metrics judge the model's own notes. Models that take no prompt (the VAE, the GANs) ignore
it. What a sample is (tokens, frames, notes) is the model family's business: every family's
`sample` returns notes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from cadenza.checkpoint import load_checkpoint
from cadenza.config import GenerateParams
from cadenza.data import load_units
from cadenza.io import atomic_dir
from cadenza.models import FAMILIES
from cadenza.representations.midi import write_midi
from cadenza.train import pick_device

log = logging.getLogger(__name__)


def generate(ckpt: Path, prepared: Path, out: Path, params: GenerateParams, seed: int
             ) -> pd.DataFrame:
    device = pick_device()
    model, mp, payload = load_checkpoint(ckpt, device)
    prompts = load_units(prepared, "test", mp, seed)
    if not prompts:
        raise RuntimeError(f"{prepared}: the test split is empty; no prompts to start from")
    piece_ids = sorted(prompts)
    generator = torch.Generator().manual_seed(seed)
    sample_fn = FAMILIES[mp.family].sample
    rows = []
    with atomic_dir(out) as tmp, torch.inference_mode():
        for i in tqdm(range(params.n_samples), desc=f"generate {payload['name']}",
                      unit="sample"):
            piece_id = piece_ids[int(torch.randint(len(piece_ids), (1,), generator=generator))]
            prompt = prompts[piece_id][: params.prompt_len]
            notes = sample_fn(model, mp, payload["info"], prompt, params, generator)
            name = f"sample_{i:03d}.mid"
            write_midi(notes, tmp / name, params.bpm)
            rows.append({"file": name, "prompt_piece": piece_id, "n_notes": len(notes[2])})
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "samples.csv", index=False)
    log.info("wrote %d samples (%d notes in all) -> %s", len(rows), table.n_notes.sum(), out)
    return table
