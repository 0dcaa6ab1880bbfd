"""Self-describing checkpoints (as in nanoGPT): weights + config + data info + step.

`generate` and `evaluate` need nothing but this file. It holds only tensors and plain Python
data, so it loads with `torch.load(weights_only=True)`: a checkpoint is data, never code.
It is written to a temporary file and renamed, so a kill never leaves a half-written one.

Integrity (issue #18): a flipped byte inside a tensor's data, or in a vocabulary token of
the pickled metadata, still loads as a valid zip and a valid pickle, so torch cannot see it.
Every file written here therefore carries a sha256 of its own content (`content_sha256`),
recomputed at load before anything is built from it; weights that hold NaN or infinity are
refused too, since they only ever produce garbage samples and NaN metrics. The same payload
always gives the same bytes (`save_data`), so DVC sees no change when a resumed run ends with
the same tensors as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from io import BytesIO
from pathlib import Path
from typing import Any

import torch

from cadenza.config import ModelParams, from_dict
from cadenza.io import atomic_path
from cadenza.models import load_family

FORMAT = "cadenza-checkpoint/3"
FORMAT_PREFIX = "cadenza-checkpoint/"
DIGEST_KEY = "sha256"
RETRAIN = "retrain it (`dvc repro` retrains)"


def save_checkpoint(
    path: Path,
    *,
    name: str,
    params: ModelParams,
    info: dict,
    model: torch.nn.Module,
    epoch: int,
    step: int,
    valid_loss: float,
    seed: int,
) -> None:
    """`info` is what the model keeps from the training data (the vocabulary), plain data.

    Each tensor is cloned into a storage of its own: a view would save its whole base
    storage, and a reloaded model (whose tensors own theirs) would then save other bytes."""
    payload = {
        "format": FORMAT,
        "name": name,
        "params": asdict(params),
        "info": info,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "step": step,
        "valid_loss": valid_loss,
        "seed": seed,
        "torch_version": str(torch.__version__),
    }
    save_data(path, payload)


def save_data(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` with its content sha256 (`seal`), atomically, byte-reproducibly.

    Why a buffer: `torch.save(obj, path)` names the zip's folder after the file, here a
    random temporary name, so equal tensors gave files of other sha256 (and DVC saw a change
    after every resumed run). Saved to a buffer, torch names it `archive`; the rest (record
    order, storage keys, zip headers) depends only on the payload."""
    buffer = BytesIO()
    torch.save(seal(payload), buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def seal(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` plus the sha256 of its content under `DIGEST_KEY` (replacing an old one)."""
    return {**payload, DIGEST_KEY: content_sha256(payload)}


def content_sha256(payload: dict[str, Any]) -> str:
    """sha256 of everything in `payload` but its `DIGEST_KEY`, independent of how torch lays
    the file out: the metadata as canonical JSON (sorted keys, tensors as placeholders), then
    every tensor in the same sorted order as name, dtype, shape and raw bytes, each part
    length-prefixed so that no two payloads give the same stream.

    Raises TypeError for a value that is neither a tensor nor plain data."""
    tensors: list[tuple[str, torch.Tensor]] = []
    meta = _canonical({k: v for k, v in payload.items() if k != DIGEST_KEY}, "", tensors)
    digest = hashlib.sha256()
    _update(
        digest, json.dumps(meta, sort_keys=True, allow_nan=True, separators=(",", ":")).encode()
    )
    for name, tensor in tensors:
        _update(digest, f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        _update(digest, _tensor_bytes(tensor))
    return digest.hexdigest()


def _canonical(value: Any, name: str, tensors: list[tuple[str, torch.Tensor]]) -> Any:
    """`value` as JSON-able data; tensors are appended to `tensors` in sorted key order and
    replaced by their name. Keys become their repr, so 1 and "1" stay apart."""
    if isinstance(value, torch.Tensor):
        tensors.append((name, value))
        return {"<tensor>": name}
    if isinstance(value, dict):
        items = sorted(((repr(k), v) for k, v in value.items()), key=lambda kv: kv[0])
        return {k: _canonical(v, f"{name}/{k}", tensors) for k, v in items}
    if isinstance(value, list | tuple):
        return [_canonical(v, f"{name}/{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    raise TypeError(f"{name or '/'}: a {type(value).__name__}, neither a tensor nor plain data")


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().data


def _update(digest: Any, data: bytes | memoryview) -> None:
    digest.update(len(data).to_bytes(8, "little"))
    digest.update(data)


def verify_content(
    payload: dict[str, Any], path: Path, what: str = "checkpoint", hint: str = ""
) -> None:
    """Refuse a payload whose content is not what its writer hashed (see the docstring)."""
    recorded = payload.get(DIGEST_KEY)
    if not isinstance(recorded, str):
        raise ValueError(
            f"{path}: no sha256 of its content recorded, so its integrity cannot be checked{hint}"
        )
    try:
        actual = content_sha256(payload)
    except TypeError as err:
        raise ValueError(f"{path}: tampered {what}: {err}{hint}") from None
    if actual != recorded:
        raise ValueError(
            f"{path}: {what} integrity check failed: sha256 of its content is "
            f"{actual}, recorded {recorded} (the file was modified or damaged)"
            f"{hint}"
        )


def check_finite(state_dict: dict[str, Any], path: Path, hint: str = "") -> None:
    """Refuse NaN or infinite weights: they load, then give NaN metrics or crash sampling."""
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex()):
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ValueError(
                    f"{path}: unusable checkpoint: tensor {name} holds {bad} NaN "
                    f"/ inf values (of {tensor.numel()}); the training diverged"
                    f"{hint}"
                )


def load_data(path: Path, what: str, device: str | None = "cpu", hint: str = "") -> Any:
    """torch.load with data only (a file of ours never runs code); a truncated, tampered or
    foreign file becomes a ValueError that names the file and says what it was meant to be."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(
            f"{path}: not a loadable {what} ({type(err).__name__}: {str(err)[:200]}){hint}"
        ) from err


def load_checkpoint(
    path: Path, device: str = "cpu"
) -> tuple[torch.nn.Module, ModelParams, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone; refuse anything that is not one of ours,
    that is not byte for byte what was written, or whose weights are not finite."""
    payload = load_data(path, "checkpoint", device)
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        if isinstance(found, str) and found.startswith(FORMAT_PREFIX):
            raise ValueError(
                f"{path}: a {found} checkpoint, from an older Cadenza; this one "
                f"reads {FORMAT} only (it carries a sha256 of its content): "
                f"{RETRAIN}"
            )
        raise ValueError(f"{path}: not a {FORMAT} checkpoint")
    verify_content(payload, path)
    missing = [k for k in ("params", "info", "state_dict") if k not in payload]
    if missing:
        raise ValueError(f"{path}: tampered checkpoint: no {', '.join(missing)}")
    params = from_dict(ModelParams, payload["params"], f"{path}:params")  # ParamsError names it
    if not isinstance(payload["state_dict"], dict):
        raise ValueError(
            f"{path}: tampered checkpoint: its state_dict is a "
            f"{type(payload['state_dict']).__name__}, not a dict"
        )
    check_finite(payload["state_dict"], path, f": {RETRAIN} (e.g. with a lower train.lr)")
    try:
        model = load_family(params.family).build(params.net, payload["info"])
        model.load_state_dict(payload["state_dict"])
    except Exception as err:  # noqa: BLE001 - wrong shapes, missing or extra tensors, bad info
        raise ValueError(
            f"{path}: tampered checkpoint: its weights do not fit its params "
            f"({type(err).__name__}: {str(err)[:300]})"
        ) from err
    return model.to(device).eval(), params, payload
