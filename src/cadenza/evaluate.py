"""`evaluate@<model>` and `reference`: objective metrics of generated pieces and of test data.

Music metrics are computed per piece on a 24-steps-per-beat roll (MuseGAN's resolution), then
averaged over pieces. Token models also get teacher-forced NLL, perplexity and accuracy on the
test split. The `reference` stage runs the same music metrics on the test split itself: the
row every model is read against.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from cadenza.checkpoint import load_checkpoint
from cadenza.config import EvaluateParams
from cadenza.data import piece_notes, token_sequences
from cadenza.io import write_json
from cadenza.metrics import musegan, muspy_set
from cadenza.metrics.likelihood import summarise, token_sums
from cadenza.prepare.parse import RejectedPiece, parse_midi
from cadenza.prepare.shards import read_pieces
from cadenza.representations.rolls import note_steps, notes_to_roll
from cadenza.representations.tokens import PAD, Notes, to_ids
from cadenza.train import pick_device, stream_logits

log = logging.getLogger(__name__)

MUSIC_METRICS = ["empty_bar_ratio", "used_pitch_classes", "qualified_note_ratio",
                 "tonal_distance", "polyphony", "pitch_range"]


def piece_metrics(notes: Notes, beats_per_bar: float, params: EvaluateParams
                  ) -> dict[str, float]:
    """All music metrics of one piece."""
    onset, duration, pitch = notes
    spb = params.steps_per_beat
    bar_beats = max(int(round(beats_per_bar)), 1)
    roll = notes_to_roll(onset, duration, pitch, spb)
    bars = musegan.to_bars(roll, bar_beats * spb)
    start, end = note_steps(onset, duration, spb)
    top, rest = musegan.split_top_voice(roll)
    return {
        "empty_bar_ratio": musegan.empty_bar_ratio(bars),
        "used_pitch_classes": musegan.used_pitch_classes(bars),
        "qualified_note_ratio": musegan.qualified_note_ratio(end - start,
                                                             params.qualified_min_steps),
        "tonal_distance": musegan.tonal_distance(top, rest, spb, bar_beats),
        "polyphony": muspy_set.polyphony(roll),
        "pitch_range": muspy_set.pitch_range(pitch),
    }


def mean_metrics(per_piece: list[dict[str, float]]) -> dict[str, float]:
    """Mean over pieces, ignoring pieces where a metric is undefined (NaN)."""
    out = {}
    for name in MUSIC_METRICS:
        values = np.array([m[name] for m in per_piece], dtype=float)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["n_pieces"] = len(per_piece)
    return out


def evaluate_reference(prepared: Path, out_json: Path, params: EvaluateParams) -> dict:
    bars = read_pieces(prepared).set_index("piece_id").beats_per_bar
    per_piece = [piece_metrics(notes, float(bars[pid]), params)
                 for pid, notes in piece_notes(prepared, "test").items()]
    result = mean_metrics(per_piece)
    write_json(out_json, result)
    log.info("reference (test split, %d pieces): %s", len(per_piece), _fmt(result))
    return result


def evaluate_model(ckpt: Path, prepared: Path, generated: Path, out_json: Path,
                   params: EvaluateParams, seed: int) -> dict:
    per_piece, unreadable = [], 0
    for path in sorted(generated.glob("*.mid")):
        try:
            parsed = parse_midi(path, "all")
        except RejectedPiece as err:  # e.g. a sample with no notes at all
            log.warning("%s: %s", path.name, err)
            unreadable += 1
            continue
        n = parsed.notes
        per_piece.append(piece_metrics((n["onset_beats"], n["duration_beats"], n["pitch"]),
                                       parsed.beats_per_bar, params))
    result = mean_metrics(per_piece)
    result["empty_samples"] = unreadable
    result.update(token_likelihood(ckpt, prepared, seed))
    write_json(out_json, result)
    log.info("%s: %s", generated.name, _fmt(result))
    return result


def token_likelihood(ckpt: Path, prepared: Path, seed: int) -> dict[str, float]:
    """Teacher-forced next-token NLL (nats), perplexity and accuracy on the test split."""
    device = pick_device()
    model, mp, payload = load_checkpoint(ckpt, device)
    vocab = payload["vocab"]
    sequences = token_sequences(prepared, "test", mp.tokens, seed)
    ids = torch.from_numpy(to_ids(sequences.values(), vocab))
    pad = vocab.index(PAD)
    nll, correct, count = 0.0, 0, 0
    for logits, y in stream_logits(model, ids, mp.train.seq_len, device):
        s = token_sums(torch.log_softmax(logits, -1).cpu().numpy(), y.cpu().numpy(), pad)
        nll, correct, count = nll + s[0], correct + s[1], count + s[2]
    return summarise(nll, correct, count)


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in metrics.items())
