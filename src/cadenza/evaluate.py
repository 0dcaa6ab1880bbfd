"""`evaluate@<model>` and `reference`: objective metrics of generated pieces and of real data.

Music metrics are computed per piece on a 24-steps-per-beat roll (MuseGAN's resolution), then
averaged over pieces. Token models also get teacher-forced NLL, perplexity and accuracy on the
test split, piano-roll models the frame NLL and accuracy, and every model gets Yang & Lerch's
overlap with the test split. The `reference`
stage gives the rows every model is read against: the training data, the test data, and the
test data with the accompaniment's bars shuffled (MuseGAN's sanity check: TD must rise), each
pooled and per source (`by_source`), since MAESTRO and LPD differ more from each other than a
model differs from either. A model whose test pieces come from several sources also gets its
likelihood and Yang & Lerch overlap per source.

The evaluation cost is bounded by the profile (`max_test_units`): the test likelihood scores
at most that many units, spread over the test pieces and sources (`cadenza.data.cap_units`),
under `torch.inference_mode()`; token models in batches of parallel rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from cadenza.batches import eval_batch_size, pick_device, stream_logits, window_logits
from cadenza.checkpoint import load_checkpoint
from cadenza.config import EvaluateParams, ModelParams
from cadenza.data import cap_units, chosen_sources, load_units, piece_notes, source_of, to_stream
from cadenza.io import write_json
from cadenza.meter import Meter, bar_lines, parse_meter
from cadenza.metrics import musegan, yang_lerch
from cadenza.metrics.likelihood import (
    TOKEN_SUMS,
    frame_accuracy,
    frame_nll,
    summarise,
    token_sums,
)
from cadenza.metrics.registry import MUSIC, REFERENCE_ROWS, Piece, music_metrics
from cadenza.metrics.yang_lerch import PieceNotes
from cadenza.models import SPECS, FrameScorer, load_family
from cadenza.prepare.parse import RejectedPiece, parse_midi
from cadenza.prepare.shards import read_pieces
from cadenza.representations.rolls import steps_to_roll
from cadenza.representations.tokens import PAD_ID, UNK_ID, Notes

log = logging.getLogger(__name__)


def on_grid(notes: Notes, meter: Meter, steps_per_beat: int) -> PieceNotes:
    """Notes in beats -> integer steps on the metric grid, sorted by (start, pitch), with the
    bar lines of every time-signature change (`cadenza.meter`)."""
    onset, duration, pitch = notes
    start, end = _grid_steps(onset, duration, steps_per_beat)
    order = np.lexsort((pitch, start))
    return PieceNotes(
        start=start[order],
        end=end[order],
        pitch=np.asarray(pitch, dtype=np.int64)[order],
        steps_per_beat=steps_per_beat,
        bar_starts=bar_lines(meter, steps_per_beat, int(end.max(initial=0))),
    )


def _grid_steps(
    onset: np.ndarray, duration: np.ndarray, steps_per_beat: int
) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) steps, end exclusive and > start, halves rounded up.

    Why not `note_steps` (np.rint, halves to even, as the models' grids were built): a length
    is measured here (QN), and with halves to even a note of exactly 3 steps that starts at
    step 1.5 spans 2 to 4, two steps. Rounding halves up moves start and end alike, so a note
    of k steps keeps k steps wherever it starts."""
    onset_steps = np.asarray(onset, dtype=np.float64) * steps_per_beat
    end_steps = onset_steps + np.asarray(duration, dtype=np.float64) * steps_per_beat
    start = np.floor(onset_steps + 0.5).astype(np.int64)
    end = np.floor(end_steps + 0.5).astype(np.int64)
    return start, np.maximum(end, start + 1)


def piece_roll(p: PieceNotes) -> np.ndarray:
    """Boolean (T, 128) roll of the notes; T = the last offset."""
    return steps_to_roll(p.start, p.end, p.pitch)


def piece_metrics(
    p: PieceNotes, params: EvaluateParams, rng: np.random.Generator | None = None
) -> dict[str, float]:
    """All music metrics of one piece (`cadenza.metrics.registry`). With `rng`, the bars of
    the accompaniment (everything but the top voice) are shuffled first: MuseGAN's check that
    TD measures harmony."""
    roll = piece_roll(p)
    top, rest = musegan.split_top_voice(roll)
    if rng is not None:
        rest = _shuffle_bars(rest, p.bar_starts, rng)
        roll = top | rest
    piece = Piece(
        notes=p,
        roll=roll,
        top=top,
        rest=rest,
        active=musegan.bar_activity(roll, p.bar_starts),
        counts=roll.sum(axis=1),
        qualified_min_steps=params.qualified_min_steps,
    )
    return {m.name: m.compute(piece) for m in music_metrics() if m.compute is not None}


def mean_metrics(per_piece: list[dict[str, float]]) -> dict[str, float]:
    """Mean over pieces, ignoring pieces where a metric is undefined (NaN)."""
    out = {}
    for name in MUSIC:
        values = np.array([m[name] for m in per_piece], dtype=float)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    out["n_pieces"] = len(per_piece)
    return out


def grid_pieces(prepared: Path, split: str, steps_per_beat: int) -> dict[str, PieceNotes]:
    """Every piece of one split of the prepared data, on the metric grid, by piece id."""
    meters = read_pieces(prepared).set_index("piece_id").time_signatures
    return {
        pid: on_grid(notes, parse_meter(meters[pid]), steps_per_beat)
        for pid, notes in piece_notes(prepared, split).items()
    }


def evaluate_reference(prepared: Path, out_json: Path, params: EvaluateParams, seed: int) -> dict:
    """The reference rows: train, test, and test with the accompaniment's bars shuffled,
    pooled over all sources, then train and test per source."""
    rng = np.random.default_rng(seed)
    per_piece = {
        "train": _metrics_by_piece(grid_pieces(prepared, "train", params.steps_per_beat), params),
        "test": _metrics_by_piece(
            test := grid_pieces(prepared, "test", params.steps_per_beat), params
        ),
        "test_shuffled_bars": _metrics_by_piece(test, params, rng),
    }
    result: dict = {row: mean_metrics(list(m.values())) for row, m in per_piece.items()}
    sources = sorted({source_of(pid) for m in per_piece.values() for pid in m})
    result["by_source"] = {
        source: {
            row: mean_metrics([v for pid, v in per_piece[row].items() if source_of(pid) == source])
            for row in ("train", "test")
        }
        for source in sources
    }
    write_json(out_json, result)
    for row in REFERENCE_ROWS:
        log.info("reference %s (%d pieces): %s", row, result[row]["n_pieces"], _fmt(result[row]))
    for source, rows in result["by_source"].items():
        log.info(
            "reference %s: %d train / %d test pieces",
            source,
            rows["train"]["n_pieces"],
            rows["test"]["n_pieces"],
        )
    td_test, td_shuffled = (result[r]["tonal_distance"] for r in REFERENCE_ROWS[1:])
    if not td_shuffled > td_test:
        log.warning(
            "TD did not rise with shuffled bars (%.3f -> %.3f): too few test pieces?",
            td_test,
            td_shuffled,
        )
    return result


def _metrics_by_piece(
    pieces: dict[str, PieceNotes], params: EvaluateParams, rng: np.random.Generator | None = None
) -> dict[str, dict[str, float]]:
    return {pid: piece_metrics(p, params, rng) for pid, p in pieces.items()}


def evaluate_model(
    ckpt: Path,
    prepared: Path,
    generated: Path,
    out_json: Path,
    params: EvaluateParams,
    seed: int,
    max_test_units: int = 0,
) -> dict:
    """Music metrics of the samples, test likelihood (capped at `max_test_units`) and Yang &
    Lerch overlap with the test split; pooled, and per source when there are several."""
    samples, unreadable = [], 0
    for path in sorted(generated.glob("*.mid")):
        try:
            parsed = parse_midi(path, "all")
        except RejectedPiece as err:  # e.g. a sample with no notes at all
            log.warning("%s: %s", path.name, err)
            unreadable += 1
            continue
        n = parsed.notes
        samples.append(
            on_grid(
                (n["onset_beats"], n["duration_beats"], n["pitch"]),
                parsed.time_signatures,
                params.steps_per_beat,
            )
        )
    result: dict[str, Any] = mean_metrics([piece_metrics(p, params) for p in samples])
    result["empty_samples"] = unreadable
    pooled, by_source, mp = likelihood(ckpt, prepared, seed, max_test_units)
    result.update(pooled)
    test = grid_pieces(prepared, "test", params.steps_per_beat)
    sources, fallback = chosen_sources(prepared, mp.prefer_sources)
    test = {pid: p for pid, p in test.items() if source_of(pid) in sources}
    result["yang_lerch"] = yang_lerch_vs_test(samples, list(test.values()))
    result["trained_on"] = ", ".join(sources)
    if fallback:
        result["prefer_fallback"] = 1
    if len(by_source) > 1:
        for source, row in by_source.items():
            source_test = [p for pid, p in test.items() if source_of(pid) == source]
            row["yl_mean_oa"] = (
                yang_lerch_vs_test(samples, source_test).get("mean", {}).get("oa", float("nan"))
            )
        result["by_source"] = by_source
    write_json(out_json, result)
    log.info("%s: %s", generated.name, _fmt(result))
    return result


def yang_lerch_vs_test(samples: list[PieceNotes], test: list[PieceNotes]) -> dict:
    """KL and OA per feature against test-set excerpts as long as the median sample, so that
    length-dependent features (note counts) compare like with like."""
    if not samples or not test:
        return {}
    n_steps = int(np.median([int(p.end.max(initial=0)) for p in samples]))
    reference = [excerpt(p, n_steps) for p in test]
    per_feature = yang_lerch.compare_sets(samples, [p for p in reference if len(p.pitch)])
    per_feature["mean"] = {
        k: float(np.nanmean([f[k] for f in per_feature.values()])) for k in ("kl", "oa")
    }
    return per_feature


def excerpt(p: PieceNotes, n_steps: int) -> PieceNotes:
    """The first `n_steps` of a piece; notes cut at the end."""
    keep = p.start < n_steps
    return PieceNotes(
        start=p.start[keep],
        end=np.minimum(p.end[keep], n_steps),
        pitch=p.pitch[keep],
        steps_per_beat=p.steps_per_beat,
        bar_starts=p.bar_starts[p.bar_starts < max(n_steps, 1)],
    )


def evaluate_valid(
    ckpt: Path, prepared: Path, out_json: Path, seed: int, max_units: int = 0
) -> dict:
    """The train stage's metrics: the same likelihood as `evaluate_model`'s, on the valid
    split (capped as the trainer's valid pass is). Sweeps choose their best point on these;
    the test split is only read to report the chosen point (issue #17)."""
    pooled, by_source, _ = likelihood(ckpt, prepared, seed, max_units, split="valid")
    result = {**pooled, **({"by_source": by_source} if len(by_source) > 1 else {})}
    write_json(out_json, result)
    log.info("%s valid: %s", ckpt.parent.name, _fmt(pooled))
    return result


def likelihood(
    ckpt: Path, prepared: Path, seed: int, max_units: int = 0, split: str = "test"
) -> tuple[dict[str, float], dict[str, dict], ModelParams]:
    """Teacher-forced likelihood on one split, where the family defines one: token NLL
    (nats), perplexity, accuracy and `<unk>` share for token models (see
    `cadenza.metrics.likelihood.token_sums`); frame NLL and Bay et al.'s frame accuracy for
    piano-roll models with per-pitch sigmoids; for every model, the trainer's best valid loss.
    Returns (pooled, per source, the model's params).

    Each source's pieces are scored as their own stream; with `max_units`, on at most that
    many units spread over the pieces and sources (`cadenza.data.cap_units`). A token model
    trained with `train.targets: last` is scored as it trained: the last symbol of every
    window, from a fresh state (`window_logits`).
    """
    device = pick_device()
    model, mp, payload = load_checkpoint(ckpt, device)
    spec = SPECS[mp.family]
    units = cap_units(load_units(prepared, split, mp, seed), max_units, mp.train.seq_len + 1)
    groups: dict[str, dict] = {}
    for pid, unit in units.items():
        groups.setdefault(source_of(pid), {})[pid] = unit
    by_source: dict[str, dict] = {}
    if spec.kind == "tokens":
        rows = eval_batch_size(mp.train, payload["info"])
        pooled_sums = np.zeros(len(TOKEN_SUMS))
        for source, group in groups.items():
            sums = np.zeros(len(TOKEN_SUMS))
            stream = to_stream(group, payload["info"])
            scorer = window_logits if mp.train.targets == "last" else stream_logits
            for logits, y in scorer(model, stream, mp.train.seq_len, device, rows):
                sums += token_sums(
                    torch.log_softmax(logits, -1).cpu().numpy(),
                    y.cpu().numpy(),
                    ignore=PAD_ID,
                    unk=UNK_ID,
                )
            by_source[source] = {f"n_{split}_pieces": len(group), **summarise(*sums)}
            pooled_sums += sums
        pooled = summarise(*pooled_sums)
    elif spec.scores_frames:
        frame_probs = cast(FrameScorer, load_family(mp.family)).frame_probs
        probs, targets = [], []
        for source, group in groups.items():
            stream = to_stream(group, payload["info"])
            if len(stream) < 2:
                continue
            p = frame_probs(model, stream, mp.train.seq_len)
            t = stream[1 : len(p) + 1].numpy()
            by_source[source] = {f"n_{split}_pieces": len(group), **_frame_scores(p, t)}
            probs.append(p)
            targets.append(t)
        pooled = _frame_scores(np.concatenate(probs), np.concatenate(targets)) if probs else {}
    else:
        pooled = {}
        by_source = {source: {f"n_{split}_pieces": len(group)} for source, group in groups.items()}
    pooled["valid_loss"] = payload["valid_loss"]  # the trainer's best, in the family's loss
    return pooled, by_source, mp


def _frame_scores(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return {
        "frame_nll": frame_nll(probs, targets),
        "frame_accuracy": frame_accuracy(probs > 0.5, targets),
    }


def _shuffle_bars(roll: np.ndarray, bar_starts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole bars in random order (bars of unequal length move whole); same length out."""
    bars = np.split(roll, bar_starts[1:])
    return np.concatenate([bars[i] for i in rng.permutation(len(bars))])


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in metrics.items() if isinstance(v, float | int))
