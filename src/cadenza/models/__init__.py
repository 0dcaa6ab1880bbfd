"""Model registry: the `family` named in params.yaml -> the module that holds it.

Every family module has the same plain interface, so one trainer, one generator and one
evaluator serve them all:

    KIND                      "tokens", "frames" or "notes": what `cadenza.data` feeds it
    Net                       frozen dataclass of hyper-parameters, the paper's as defaults
    build(net, info)          -> nn.Module  (info: the vocabulary etc. from the train split)
    loss(model, x, y)         -> mean loss of a batch of windows (y = x shifted by one)
    sample(model, mp, info, prompt, gen, generator) -> notes (onset_beats, dur_beats, pitch)

Adversarial families also define `make_optimizers` and `train_step`, and set
`EARLY_STOP = False`.
"""

from __future__ import annotations

from types import ModuleType

from cadenza.models import (
    frame_vae,
    latent_lstm,
    note_gan,
    note_rnn,
    roll_gan,
    roll_lstm,
    roll_made,
    roll_nade,
    token_lm,
    transformer,
    unigram,
)

FAMILIES: dict[str, ModuleType] = {
    module.__name__.rsplit(".", 1)[-1]: module
    for module in (
        token_lm,
        transformer,
        unigram,
        roll_lstm,
        roll_nade,
        roll_made,
        frame_vae,
        latent_lstm,
        note_rnn,
        note_gan,
        roll_gan,
    )
}
