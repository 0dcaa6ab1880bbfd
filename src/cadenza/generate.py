"""`generate@<model>`: checkpoint -> N sampled pieces -> MIDI files.

Each sample continues a prompt taken from the start of a test piece (so the model is asked to
go on from real music it never trained on) and only the continuation is written, so the
metrics judge the model's own notes. Special tokens are never drawn: `<eos>` would end a
sample after a handful of tokens, and `<pad>` / `<unk>` decode to nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from cadenza.checkpoint import load_checkpoint
from cadenza.config import GenerateParams
from cadenza.data import token_sequences
from cadenza.io import atomic_dir
from cadenza.models import FAMILIES
from cadenza.representations.midi import write_midi
from cadenza.representations.tokens import EOS, PAD, UNK, decode
from cadenza.train import pick_device

log = logging.getLogger(__name__)


def generate(ckpt: Path, prepared: Path, out: Path, params: GenerateParams, seed: int
             ) -> pd.DataFrame:
    device = pick_device()
    model, mp, payload = load_checkpoint(ckpt, device)
    vocab: list[str] = payload["vocab"]
    index = {t: i for i, t in enumerate(vocab)}
    prompts = token_sequences(prepared, "test", mp.tokens, seed)
    if not prompts:
        raise RuntimeError(f"{prepared}: the test split is empty; no prompts to start from")
    piece_ids = sorted(prompts)
    generator = torch.Generator().manual_seed(seed)
    sample_fn = FAMILIES[mp.family].sample
    rows = []
    with atomic_dir(out) as tmp:
        for i in tqdm(range(params.n_samples), desc=f"generate {payload['name']}",
                      unit="sample"):
            piece_id = piece_ids[int(torch.randint(len(piece_ids), (1,), generator=generator))]
            prompt = [index.get(t, index[UNK]) for t in prompts[piece_id][: params.prompt_len]]
            ids = sample_fn(model, prompt, params.length, temperature=params.temperature,
                            top_k=params.top_k, greedy_prob=params.greedy_prob,
                            banned=[index[PAD], index[UNK], index[EOS]],
                            generator=generator)
            notes = decode([vocab[j] for j in ids], mp.tokens)
            name = f"sample_{i:03d}.mid"
            write_midi(notes, tmp / name, params.bpm)
            rows.append({"file": name, "prompt_piece": piece_id, "n_tokens": len(ids),
                         "n_notes": len(notes[2])})
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "samples.csv", index=False)
    log.info("wrote %d samples (%d notes in all) -> %s", len(rows), table.n_notes.sum(), out)
    return table
