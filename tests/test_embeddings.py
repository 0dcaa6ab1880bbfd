"""t-SNE maps of learned embeddings (paper 003's figs. 6 and 8) from real checkpoints."""

from __future__ import annotations

import numpy as np
import torch

from cadenza.checkpoint import load_checkpoint, save_checkpoint
from cadenza.config import ModelParams, from_dict
from cadenza.embeddings import embedding_maps, embedding_points, token_meaning
from cadenza.io import read_json
from cadenza.models import load_family

EVENT_VOCAB = (
    ["<pad>", "<unk>", "<eos>"]
    + [f"on_{p}" for p in range(48, 84)]
    + [f"off_{p}" for p in range(48, 84)]
    + [f"shift_{k}" for k in (1, 5, 10, 50)]
    + ["vel_16", "vel_20"]
)


def _checkpoint(path, raw: dict, info: dict):
    mp = from_dict(ModelParams, raw, "model")
    torch.manual_seed(0)
    model = load_family(mp.family).build(mp.net, info)
    save_checkpoint(
        path,
        name=path.parent.name,
        params=mp,
        info=info,
        model=model,
        epoch=0,
        step=0,
        valid_loss=0.0,
        seed=0,
    )
    return path


def test_token_meaning_tells_note_on_from_note_off():
    assert token_meaning("on_60", "event") == (60.0, "note-on")
    assert token_meaning("off_72", "event") == (72.0, "note-off")
    assert token_meaning("shift_10", "event")[1] == "other"
    assert token_meaning("60-64-68", "chord") == (64.0, "note-on")
    assert token_meaning("rest", "chord")[1] == "other"
    assert token_meaning("_", "melody")[1] == "other"


def test_maps_for_token_and_roll_models_and_none_for_the_rest(tmp_path):
    ckpts = {
        "events": _checkpoint(
            tmp_path / "events" / "ckpt.pt",
            {
                "family": "token_lm",
                "tokens": {"scheme": "event"},
                "net": {"layers": 1, "embedding": 16, "hidden": 16},
            },
            {"vocab": EVENT_VOCAB},
        ),
        "roll": _checkpoint(
            tmp_path / "roll" / "ckpt.pt",
            {"family": "roll_lstm", "net": {"embedding": 8, "hidden": 8}},
            {},
        ),
        "gan": _checkpoint(tmp_path / "gan" / "ckpt.pt", {"family": "note_gan"}, {}),
    }
    done = embedding_maps(ckpts, tmp_path / "maps", seed=0)
    assert done["events"] == "events.png" and done["roll"] == "roll.png"
    assert done["gan"].startswith("no map")
    assert read_json(tmp_path / "maps" / "maps.json") == done
    for name in ("events", "roll"):
        png = (tmp_path / "maps" / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [
        "events.png",
        "maps.json",
        "roll.png",
    ]
    # the points are the embedding rows themselves, with the tokens' pitch and kind
    model, mp, payload = load_checkpoint(ckpts["events"])
    points = embedding_points(model, mp.family, "event", payload["info"])
    assert np.allclose(points.vectors, model.embed.weight.detach().numpy())
    assert points.kind.count("note-on") == 36 and points.kind.count("note-off") == 36
    assert points.pitch[EVENT_VOCAB.index("off_70")] == 70
