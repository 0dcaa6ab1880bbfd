"""Paper 004's two GANs as the seed describes them, and their first versions still selectable:
the ImageGAN generator's four dense layers, the MidiGAN's z-scored notes."""

import numpy as np
import pytest
import torch
from torch import nn

from cadenza.checkpoint import load_checkpoint, save_checkpoint
from cadenza.config import GenerateParams, ModelParams, ParamsError, from_dict
from cadenza.models import note_gan, roll_gan


def model_params(family: str, **net) -> ModelParams:
    return from_dict(ModelParams, {"family": family, "net": net}, f"models.{family}")


def layers(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module if isinstance(m, kind)]


# --------------------------------------------------------------------------- roll_gan


def test_roll_gan_generator_has_the_seeds_four_dense_layers():
    net = model_params("roll_gan").net
    assert (net.generator_layers, net.seed_dropout, net.decode) == (4, True, "threshold")
    model = roll_gan.RollGAN(net)
    dense = layers(model.generator, nn.Linear)
    assert [(d.in_features, d.out_features) for d in dense] == [
        (10, 128),
        (128, 256),
        (256, 512),
        (512, 8 * 53 * 25),
    ]
    # LeakyReLU 0.2 and dropout 0.2 after every dense layer and after the transposed conv
    assert len(layers(model.generator, nn.LeakyReLU)) == 5
    assert [d.p for d in layers(model.generator, nn.Dropout)] == [0.2] * 5
    # the discriminator: flatten, batch norm, dropout, dense (paper 004, section 4.3.2)
    assert [type(m) for m in model.discriminator[-4:]] == [
        nn.Flatten,
        nn.BatchNorm1d,
        nn.Dropout,
        nn.Linear,
    ]
    model.eval()
    with torch.no_grad():
        images = model.fake(3, "cpu", torch.Generator().manual_seed(0))
        assert images.shape == (3, 1, 106, 100)
        assert model.discriminator(images).shape == (3, 1)


def test_roll_gan_first_version_is_selectable_and_unchanged():
    model = roll_gan.RollGAN(model_params("roll_gan", generator_layers=2, seed_dropout=False).net)
    assert [(d.in_features, d.out_features) for d in layers(model.generator, nn.Linear)] == [
        (10, 128),
        (128, 8 * 53 * 25),
    ]
    # the first version's state-dict keys, so its checkpoints still load
    assert [k for k in model.state_dict() if k.startswith("generator")] == [
        "generator.0.weight",
        "generator.0.bias",
        "generator.3.weight",
        "generator.3.bias",
        "generator.7.weight",
        "generator.7.bias",
        "generator.9.weight",
        "generator.9.bias",
    ]
    assert "discriminator.10.weight" in model.state_dict()  # the dense output, after BN
    with torch.no_grad():
        assert model.eval().fake(2, "cpu").shape == (2, 1, 106, 100)


def test_roll_gan_decodes_by_threshold_or_by_sampling():
    gen = GenerateParams(length=100)
    for decode in ("threshold", "sample"):
        mp = model_params("roll_gan", generator_layers=1, decode=decode)
        torch.manual_seed(0)
        model = roll_gan.RollGAN(mp.net)
        with torch.no_grad():  # every cell at p = 0.5 exactly: not above the threshold
            model.generator[-1].weight.zero_()
            model.generator[-1].bias.zero_()
        onset, _, _ = roll_gan.sample(
            model, mp, {}, np.zeros((0, 128)), gen, torch.Generator().manual_seed(0)
        )
        assert (len(onset) == 0) == (decode == "threshold")


@pytest.mark.parametrize(
    ("net", "message"),
    [
        ({"generator_layers": 0}, "models.roll_gan.net.generator_layers: must be in [1, 6]"),
        ({"generator_layers": "four"}, "models.roll_gan.net.generator_layers: expected an integer"),
        ({"decode": "argmax"}, "models.roll_gan.net.decode: must be one of"),
        ({"seed_dropout": 1}, "models.roll_gan.net.seed_dropout: expected true/false"),
    ],
)
def test_roll_gan_bad_net_params_fail_naming_the_param(net, message):
    with pytest.raises(ParamsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        model_params("roll_gan", **net)


# --------------------------------------------------------------------------- note_gan

# pitch 60/64 (mean 62, std 2), step 0/0.5 (mean 0.25, std 0.25), duration 0.25/0.75
NOTES = np.array(
    [[60, 0.0, 0.25], [64, 0.5, 0.75], [60, 0.0, 0.25], [64, 0.5, 0.75]], dtype=np.float32
)


def test_z_score_statistics_are_the_training_notes_exact_mean_and_std():
    mp = model_params("note_gan")
    assert mp.net.scaling == "zscore"
    info = note_gan.make_info({"a/1": NOTES[:1], "a/2": NOTES[1:]}, mp)
    assert info == {"mean": [62.0, 0.25, 0.5], "std": [2.0, 0.25, 0.25]}
    # a feature with no spread keeps std 1 (no division by zero)
    assert note_gan.note_statistics(np.array([[60, 0, 1.0], [60, 0, 3.0]]))["std"] == [
        1.0,
        1.0,
        1.0,
    ]
    assert note_gan.make_info({"a/1": NOTES}, model_params("note_gan", scaling="minmax")) == {}


def test_z_score_round_trip_gives_the_notes_back_exactly():
    mp = model_params("note_gan")
    model = note_gan.build(mp.net, note_gan.make_info({"a/1": NOTES}, mp))
    scaled = model.scale(torch.from_numpy(NOTES))
    assert scaled.tolist() == [[-1, -1, -1], [1, 1, 1], [-1, -1, -1], [1, 1, 1]]
    assert torch.equal(model.unscale(scaled), torch.from_numpy(NOTES))
    # on values that are not round numbers, up to the float32 the generator works in
    rng = np.random.default_rng(0)
    notes = np.stack(
        [rng.integers(21, 109, 500), rng.exponential(0.3, 500), rng.exponential(0.5, 500)], axis=1
    ).astype(np.float32)
    info = note_gan.make_info({"a/1": notes}, mp)
    assert info["mean"] == notes.astype(np.float64).mean(axis=0).tolist()
    model = note_gan.build(mp.net, info)
    scaled = model.scale(torch.from_numpy(notes))
    assert scaled.dtype == torch.float32
    assert scaled.double().mean(0).abs().max() < 1e-6
    assert (scaled.double().std(0, unbiased=False) - 1).abs().max() < 1e-6
    torch.testing.assert_close(model.unscale(scaled), torch.from_numpy(notes), rtol=1e-6, atol=1e-6)


def test_min_max_is_still_selectable_and_unchanged():
    model = note_gan.build(model_params("note_gan", scaling="minmax").net, {})
    assert "mean" not in model.state_dict()  # the first version's state dict
    x = torch.tensor([[127.0, 4.0, 2.0], [0.0, 9.0, 0.0]])
    assert model.scale(x).tolist() == [[1.0, 1.0, 0.0], [-1.0, 1.0, -1.0]]  # 9 s clipped to 4
    assert model.unscale(torch.tensor([[0.0, -1.0, 1.0]])).tolist() == [[63.5, 0.0, 4.0]]


def test_the_checkpoint_carries_the_statistics_to_generation(tmp_path):
    mp = model_params("note_gan")
    info = note_gan.make_info({"a/1": NOTES}, mp)
    model = note_gan.build(mp.net, info)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(
        path,
        name="note_gan",
        params=mp,
        info=info,
        model=model,
        epoch=1,
        step=1,
        valid_loss=0.0,
        seed=0,
    )
    loaded, _, payload = load_checkpoint(path)
    assert payload["info"] == info
    assert loaded.mean.tolist() == [62.0, 0.25, 0.5] and loaded.std.tolist() == [2, 0.25, 0.25]
    # rebuilt without the info, the weights' buffers still hold the statistics
    bare = note_gan.build(mp.net, {})
    bare.load_state_dict(payload["state_dict"])
    assert torch.equal(bare.unscale(torch.ones(1, 3)), torch.tensor([[64.0, 0.5, 0.75]]))
    onset, duration, pitch = note_gan.sample(
        loaded,
        mp,
        info,
        np.zeros((0, 3)),
        GenerateParams(length=20),
        torch.Generator().manual_seed(0),
    )
    assert len(pitch) == 20 and (np.diff(onset) >= 0).all() and (duration > 0).all()
    assert ((pitch >= 60) & (pitch <= 64)).all()  # tanh: within one std of the mean


def test_without_statistics_the_first_batch_gives_them(caplog):
    mp = model_params("note_gan")
    model = note_gan.build(mp.net, {})
    optimizers = note_gan.make_optimizers(model, mp.train)
    with caplog.at_level("WARNING", logger="cadenza.models.note_gan"):
        note_gan.train_step(model, torch.from_numpy(NOTES)[:, None], None, optimizers)
    assert "taking them from the first batch" in caplog.text
    assert bool(model.fitted) and model.mean.tolist() == [62.0, 0.25, 0.5]


def test_note_gan_bad_scaling_fails_naming_the_param():
    with pytest.raises(ParamsError, match="models.note_gan.net.scaling: must be one of"):
        model_params("note_gan", scaling="robust")


# --------------------------------------------------------------------------- both


def batch_norm_passes(module: nn.Module) -> int:
    """Training-mode passes through `module`'s first batch norm (each moves its statistics)."""
    return int(layers(module.modules(), nn.modules.batchnorm._BatchNorm)[0].num_batches_tracked)


def test_a_step_runs_each_network_only_as_its_losses_need():
    """Discriminator: real and fake for its update, fake for the generator's (3 passes, not the
    6 of computing both losses twice); generator: a batch of fakes for each update (2)."""
    model = roll_gan.RollGAN(model_params("roll_gan").net)
    x = torch.rand(4, roll_gan.WIDTH, 128) < 0.1
    roll_gan.train_step(model, x, None, roll_gan.make_optimizers(model, None))
    assert batch_norm_passes(model.discriminator) == 3
    mp = model_params("note_gan")
    midi_gan = note_gan.build(mp.net, note_gan.make_info({"a/1": NOTES}, mp))
    note_gan.train_step(
        midi_gan,
        torch.from_numpy(NOTES)[:, None],
        None,
        note_gan.make_optimizers(midi_gan, mp.train),
    )
    assert batch_norm_passes(midi_gan.generator) == 2
