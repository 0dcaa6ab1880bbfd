"""Checkpoints that prove their integrity (issue #18, item 6).

A flipped byte inside a tensor's data record, or a changed vocabulary token in the pickled
metadata, still loads with torch (the zip and the pickle stay valid): each test first shows
that torch takes the damaged file, then that `load_checkpoint` refuses it. Also: NaN
weights, older formats, byte-reproducible files, and the resume file's seal and CUDA state.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from cadenza.checkpoint import (
    FORMAT,
    content_sha256,
    load_checkpoint,
    save_checkpoint,
    save_data,
)
from cadenza.config import EvaluateParams, ModelParams, from_dict
from cadenza.evaluate import evaluate_model
from cadenza.generate import generate
from cadenza.models import load_family
from cadenza.train import Progress, _resume, _save_resume

CHORDS = ["60-64-67", "62-65-69", "59-62-67", "57-60-64", "60-65-69", "rest"]
INFO = {"vocab": ["<pad>", "<unk>", "<eos>", *CHORDS], "counts": [0, 0, 0, 9, 8, 7, 6, 5, 4]}
RAW = {
    "family": "token_lm",
    "tokens": {"scheme": "chord"},
    "net": {"cell": "lstm", "layers": 1, "embedding": 8, "hidden": 16},
    "train": {"epochs": 2, "batch_size": 4, "seq_len": 8},
}
INTEGRITY = re.compile(
    r"checkpoint integrity check failed: sha256 of its content is "
    r"[0-9a-f]{64}, recorded [0-9a-f]{64} \(the file was modified or "
    r"damaged\)"
)


def model_params() -> ModelParams:
    return from_dict(ModelParams, RAW, "models.tiny")


def build(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return load_family("token_lm").build(model_params().net, INFO)


def save(path: Path, model: torch.nn.Module) -> Path:
    save_checkpoint(
        path,
        name="tiny",
        params=model_params(),
        info=INFO,
        model=model,
        epoch=3,
        step=12,
        valid_loss=1.25,
        seed=0,
    )
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_offset(path: Path, member: str) -> tuple[int, int]:
    """(offset in the file, size) of a stored zip member's bytes, from its local header."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_sixteen_flipped_bytes_of_weight_data_are_refused(tmp_path):
    ckpt = save(tmp_path / "ckpt.pt", build())
    with zipfile.ZipFile(ckpt) as archive:
        records = [i for i in archive.infolist() if re.fullmatch(r"archive/data/\d+", i.filename)]
    biggest = max(records, key=lambda i: i.file_size).filename
    start, size = data_offset(ckpt, biggest)
    assert size >= 64
    data = bytearray(ckpt.read_bytes())
    for i in range(start + size // 2, start + size // 2 + 16):
        data[i] ^= 0xFF
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))

    # torch alone takes it: the damage is data, not structure
    flipped = torch.load(bad, weights_only=True)["state_dict"]
    good = torch.load(ckpt, weights_only=True)["state_dict"]
    assert any(not torch.equal(flipped[k], good[k]) for k in good)
    with pytest.raises(ValueError, match=INTEGRITY) as err:
        load_checkpoint(bad)
    assert str(bad) in str(err.value)
    load_checkpoint(ckpt)  # the undamaged original still loads


def test_one_changed_byte_in_a_vocabulary_token_is_refused(tmp_path):
    ckpt = save(tmp_path / "ckpt.pt", build())
    bad = tmp_path / "token.pt"
    with zipfile.ZipFile(ckpt) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "archive/data.pkl":
                assert data.count(b"62-65-69") == 1
                data = data.replace(b"62-65-69", b"62-65-68")  # same length: a valid pickle
            dst.writestr(info, data)

    assert torch.load(bad, weights_only=True)["info"]["vocab"][4] == "62-65-68"
    with pytest.raises(ValueError, match=INTEGRITY) as err:
        load_checkpoint(bad)
    assert str(bad) in str(err.value)


def test_nan_or_infinite_weights_are_refused_by_load_generate_and_evaluate(tmp_path):
    model = build()
    names = sorted(model.state_dict())
    with torch.no_grad():
        model.state_dict()[names[2]].view(-1)[:2] = float("nan")
        model.state_dict()[names[2]].view(-1)[5] = float("inf")
        model.state_dict()[names[4]].view(-1)[0] = float("nan")  # a later tensor: not named
    ckpt = save(tmp_path / "ckpt.pt", model)
    payload = torch.load(ckpt, weights_only=True)
    assert content_sha256(payload) == payload["sha256"]  # the seal is valid: only NaN is wrong

    message = (
        rf"{re.escape(str(ckpt))}: unusable checkpoint: tensor {re.escape(names[2])} "
        r"holds 3 NaN / inf values \(of \d+\); the training diverged: retrain it"
    )
    with pytest.raises(ValueError, match=message):
        load_checkpoint(ckpt)
    with pytest.raises(ValueError, match=message):
        generate(ckpt, tmp_path / "prepared", tmp_path / "gen", None, seed=0)
    with pytest.raises(ValueError, match=message):
        evaluate_model(
            ckpt, tmp_path / "prepared", tmp_path / "gen", tmp_path / "m.json", EvaluateParams(), 0
        )
    assert not (tmp_path / "gen").exists() and not (tmp_path / "m.json").exists()


def test_equal_tensors_give_byte_identical_files(tmp_path):
    """Two saves to other paths (so other temporary names), and a save, load, save round
    trip: the same sha256, and the zip's folder is `archive`, not a temporary name."""
    a = save(tmp_path / "a" / "ckpt.pt", build())
    b = save(tmp_path / "b" / "model.pt", build())
    assert sha256(a) == sha256(b)
    with zipfile.ZipFile(a) as archive:
        assert {n.split("/")[0] for n in archive.namelist()} == {"archive"}
    model, _, _ = load_checkpoint(a)
    again = save(tmp_path / "c" / "ckpt.pt", model)
    assert again.read_bytes() == a.read_bytes()
    other = save(tmp_path / "d" / "ckpt.pt", build(seed=1))  # other weights, other bytes
    assert sha256(other) != sha256(a)


def test_older_or_unsealed_checkpoints_are_refused_with_what_to_do(tmp_path):
    payload = torch.load(save(tmp_path / "ckpt.pt", build()), weights_only=True)
    old = tmp_path / "old.pt"
    torch.save({**payload, "format": "cadenza-checkpoint/2"}, old)
    with pytest.raises(
        ValueError,
        match=re.escape(
            f"{old}: a cadenza-checkpoint/2 checkpoint, from an older Cadenza; this one reads "
            f"{FORMAT} only (it carries a sha256 of its content): retrain it (`dvc repro` "
            "retrains)"
        ),
    ):
        load_checkpoint(old)
    unsealed = tmp_path / "unsealed.pt"
    torch.save({k: v for k, v in payload.items() if k != "sha256"}, unsealed)
    with pytest.raises(
        ValueError, match=f"{re.escape(str(unsealed))}: no sha256 of its content recorded"
    ):
        load_checkpoint(unsealed)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match=f"not a {FORMAT} checkpoint"):
        load_checkpoint(foreign)


def training_state(seed: int):
    """A model, its optimizer, scheduler and generator, as `train` builds them."""
    model = build(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
    return model, [optimizer], plateau, torch.Generator().manual_seed(seed)


def write_resume(path: Path) -> torch.nn.Module:
    model, optimizers, plateau, generator = training_state(0)
    loss = load_family("token_lm").loss(
        model, torch.randint(0, 9, (2, 8)), torch.randint(1, 9, (2, 8))
    )
    loss.backward()
    optimizers[0].step()  # an optimizer with state: step, moments
    plateau.step(1.5)
    progress = Progress(
        epoch=1, step=1, best=1.5, rows=[{"epoch": 1, "valid_loss": 1.5, "train_loss": math.nan}]
    )
    _save_resume(path, model_params(), "f" * 64, model, optimizers, plateau, generator, progress)
    return model


def resume(path: Path) -> tuple[torch.nn.Module, Progress]:
    model, optimizers, plateau, generator = training_state(1)
    return model, _resume(path, model_params(), "f" * 64, model, optimizers, plateau, generator)


def test_a_damaged_resume_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "ckpt.resume.pt"
    saved = write_resume(path)
    model, progress = resume(path)  # a sound one resumes: weights and progress come back
    assert progress.epoch == 1 and all(
        torch.equal(a, b)
        for a, b in zip(saved.state_dict().values(), model.state_dict().values(), strict=True)
    )
    with zipfile.ZipFile(path) as archive:
        record = max(
            (i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size
        ).filename
    start, size = data_offset(path, record)
    data = bytearray(path.read_bytes())
    data[start + size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(str(path))}: resume file integrity "
        r"check failed: .* \(the file was modified or damaged\); delete it to "
        r"train from the start",
    ):
        resume(path)
    assert path.read_bytes() == bytes(data)  # kept, for the user to judge


def test_cuda_random_state_is_restored_only_on_as_many_gpus(tmp_path, caplog):
    path = tmp_path / "ckpt.resume.pt"
    write_resume(path)
    payload = torch.load(path, weights_only=True)
    assert ("cuda_rng" in payload) == torch.cuda.is_available()
    with caplog.at_level(logging.WARNING, logger="cadenza.train"):
        resume(path)  # a file from this machine: nothing to warn about
    assert "random state" not in caplog.text

    states = payload.get("cuda_rng", []) + [torch.zeros(16, dtype=torch.uint8)]  # one more GPU
    save_data(path, {**payload, "cuda_rng": states})
    with caplog.at_level(logging.WARNING, logger="cadenza.train"):
        _, progress = resume(path)
    assert progress.epoch == 1
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert (
        f"holds the random state of {len(states)} GPU(s), this machine has {have}: "
        "not restored" in caplog.text
    )
