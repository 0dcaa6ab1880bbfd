"""`embeddings`: t-SNE maps of the learned input embeddings, as in paper 003's figs. 6 and 8.

Why: a map shows at a glance whether a model learned something about pitch: neighbouring
pitches should lie near each other, and note-on and note-off events should form apart.
Paper 003 drew the note-on events as circles and the note-off events as crosses, coloured
from blue (low) to red (high pitch); so do we. Token models map their token embedding rows;
the piano-roll LSTM maps its per-pitch embedding (paper 003's fig. 8). Other families have no
per-symbol embedding and get no map.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.manifold import TSNE

from cadenza.checkpoint import load_checkpoint
from cadenza.io import atomic_dir, write_json
from cadenza.models import SPECS
from cadenza.plotting import plt, save_png

log = logging.getLogger(__name__)

MAX_TOKENS = 400  # the most frequent tokens only: keeps t-SNE to seconds on a CPU


@dataclass(frozen=True)
class Points:
    """Embedding rows with what they stand for: a pitch (or NaN) and a kind per row."""

    vectors: np.ndarray  # (n, d)
    pitch: np.ndarray  # (n,) float, NaN where the symbol has no pitch
    kind: list[str]  # "note-on", "note-off" or "other"
    labels: list[str]


def token_meaning(token: str, scheme: str) -> tuple[float, str]:
    """(pitch, kind) of one token. In the event scheme `on_60` is a note-on and `off_60` a
    note-off, in the MIDI-message scheme `note-on-60-0` and `note-off-60-480`; in the grid
    schemes a pitch token (or a chord's mean pitch) starts or sounds a
    note, so it counts as note-on; everything else (rests, holds, shifts) is "other"."""
    if scheme == "event":
        match = re.fullmatch(r"(on|off)_(\d+)", token)
        if match:
            return float(match[2]), "note-on" if match[1] == "on" else "note-off"
        return float("nan"), "other"
    if scheme == "midi_message":
        match = re.fullmatch(r"note-(on|off)-(\d+)-\d+", token)
        if match:
            return float(match[2]), f"note-{match[1]}"
        return float("nan"), "other"
    parts = token.split("-")
    if all(p.isdigit() for p in parts):
        return float(np.mean([int(p) for p in parts])), "note-on"
    return float("nan"), "other"


def embedding_points(
    model: torch.nn.Module,
    family: str,
    scheme: str | None,
    info: dict,
    max_tokens: int = MAX_TOKENS,
) -> Points | None:
    """The rows to map, or None where the family has no per-symbol embedding."""
    if scheme is not None and "vocab" in info:
        vocab = list(info["vocab"])
        layers = [
            m
            for m in model.modules()
            if isinstance(m, torch.nn.Embedding) and m.num_embeddings == len(vocab)
        ]
        if not layers:
            return None
        weight = layers[0].weight.detach().float().cpu().numpy()[:max_tokens]
        meaning = [token_meaning(t, scheme) for t in vocab[: len(weight)]]
        return Points(
            weight, np.array([m[0] for m in meaning]), [m[1] for m in meaning], vocab[: len(weight)]
        )
    layer = getattr(model, "pitch_embedding", None)
    if SPECS[family].embeds_pitches and isinstance(layer, torch.nn.Linear):
        weight = layer.weight.detach().float().cpu().numpy().T  # (pitches, d)
        low = 0 if len(weight) == 128 else 21  # 128 MIDI pitches, or 88 keys from A0
        pitch = np.arange(len(weight), dtype=float) + low
        return Points(weight, pitch, ["note-on"] * len(weight), [str(int(p)) for p in pitch])
    return None


def tsne_2d(vectors: np.ndarray, seed: int) -> np.ndarray:
    """t-SNE to 2-D; perplexity shrinks for small vocabularies (it must stay below n). The
    exact method: for a few hundred points it is faster than Barnes-Hut, and deterministic."""
    perplexity = float(min(30.0, max(2.0, (len(vectors) - 1) / 3)))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        random_state=seed,
        max_iter=500,
        method="exact",
    )
    return tsne.fit_transform(vectors.astype(np.float64))


def plot_map(xy: np.ndarray, points: Points, title: str, out: Path) -> Path:
    """Circles for note-on, crosses for note-off (paper 003), coloured by pitch; grey dots
    for the rest."""
    fig, ax = plt.subplots(figsize=(7, 6))
    kinds = np.array(points.kind)
    other = kinds == "other"
    if other.any():
        ax.scatter(
            xy[other, 0],
            xy[other, 1],
            s=8,
            c="0.7",
            marker=".",
            label="other (rest, shift, velocity, special)",
        )
    pitched = ~np.isnan(points.pitch)
    vmin, vmax = (np.nanmin(points.pitch), np.nanmax(points.pitch)) if pitched.any() else (0, 1)
    scatter = None
    for kind, marker in (("note-on", "o"), ("note-off", "x")):
        sel = (kinds == kind) & pitched
        if sel.any():
            scatter = ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=22,
                marker=marker,
                cmap="coolwarm",
                c=points.pitch[sel],
                vmin=vmin,
                vmax=vmax,
                label=kind,
                alpha=0.8,
            )
    if scatter is not None:
        fig.colorbar(scatter, ax=ax, label="MIDI pitch (mean for chords)")
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_png(fig, out, dpi=80)


def embedding_maps(models: dict[str, Path], out: Path, seed: int) -> dict[str, str]:
    """One `<model>.png` per model with a per-symbol embedding, into `out` (one atomic
    folder), plus `maps.json` saying which models have none and why."""
    done: dict[str, str] = {}
    with atomic_dir(out) as tmp:
        for name, ckpt in sorted(models.items()):
            model, mp, payload = load_checkpoint(ckpt, "cpu")
            scheme = mp.tokens.scheme if mp.tokens is not None else None
            points = embedding_points(model, mp.family, scheme, payload["info"])
            if points is None:
                done[name] = f"no map: family {mp.family} has no per-symbol embedding"
                continue
            if len(points.vectors) < 5:
                done[name] = f"no map: only {len(points.vectors)} symbols"
                continue
            xy = tsne_2d(points.vectors, seed)
            what = f"{scheme} tokens" if scheme else "pitch embedding"
            plot_map(
                xy, points, f"{name}: t-SNE of {len(points.vectors)} {what}", tmp / f"{name}.png"
            )
            done[name] = f"{name}.png"
            log.info("embedding map of %s (%d rows)", name, len(points.vectors))
        write_json(tmp / "maps.json", done)
    return done
