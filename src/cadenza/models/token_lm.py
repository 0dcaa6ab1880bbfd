"""Token language model: embedding -> n recurrent layers (RNN / LSTM / GRU) -> softmax.

The model of paper 003 (Huang & Wu, "Deep Learning for Music": a 2-layer LSTM, embedding 128,
hidden 128, over chord or MIDI-event tokens), paper 002 (one LSTM layer of 64 over pitch
symbols with a `<next>` separator), paper 001 (one LSTM layer with dropout over the melody
time series) and paper 000 (a vanilla RNN with one hidden layer over the lowest note). With
`train.epochs: 0` it is paper 003's `untrained` baseline. `TokenLMNet` selects the variant.

`sample` implements paper 003's generation, shared by every token family: feed a
prompt, then draw each next token either greedily (with probability `greedy_prob`) or from
the temperature-scaled, optionally top-k filtered softmax. Paper 000's "predicting k future
notes" is this loop run for k steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn

from cadenza.config import GenerateParams, ModelParams
from cadenza.models.specs import TokenLMNet
from cadenza.representations.tokens import EOS, GAP, PAD, UNK, Notes, decode

if TYPE_CHECKING:
    from cadenza.models.transformer import Transformer  # samples with this loop

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class TokenLM(nn.Module):
    def __init__(self, vocab_size: int, net: TokenLMNet) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, net.embedding)
        self.rnn = CELLS[net.cell](
            net.embedding,
            net.hidden,
            num_layers=net.layers,
            batch_first=True,
            dropout=net.dropout if net.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(net.dropout)
        self.head = nn.Linear(net.hidden, vocab_size)

    def forward(self, ids: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """ids (B, T) -> logits (B, T, V), recurrent state."""
        hidden, state = self.rnn(self.embed(ids), state)
        return self.head(self.drop(hidden)), state


def build(net: TokenLMNet, info: dict) -> TokenLM:
    return TokenLM(len(info["vocab"]), net)


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy (nats), padding ignored; shared by every token family."""
    logits, _ = model(x)
    return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=0)


@torch.no_grad()
def sample(
    model: nn.Module,
    mp: ModelParams,
    info: dict,
    prompt: list[str],
    gen: GenerateParams,
    generator: torch.Generator,
) -> Notes:
    """Continue the prompt by `gen.length` tokens (never a special one); decode to notes.

    A model trained as paper 001's (`tokens.song_gap`, `train.targets: last`) sees what it
    trained on: the `/` gap before the prompt, and each next token predicted from the last
    `seq_len` tokens and a fresh state, as its code generates."""
    vocab = info["vocab"]
    index = {t: i for i, t in enumerate(vocab)}
    gap = info.get("gap", 0)
    before = [index[GAP]] * gap if gap else []  # what precedes every piece in training
    ids = before + [index.get(t, index[UNK]) for t in prompt] or [index[EOS]]
    banned = [index[t] for t in (PAD, UNK, EOS, GAP) if t in index]  # GAP: song_gap's `/`
    window = mp.train.seq_len if mp.train.targets == "last" else 0
    model.eval()
    device = next(model.parameters()).device
    logits, state = model(torch.tensor([ids[-window:]], device=device))
    out: list[int] = []
    for _ in range(gen.length):
        last = logits[0, -1].float().cpu()
        last[banned] = -float("inf")
        if torch.rand((), generator=generator).item() < gen.greedy_prob:
            token = int(last.argmax())
        else:
            scaled = last / gen.temperature
            if gen.top_k:
                kth = torch.topk(scaled, min(gen.top_k, scaled.numel())).values[-1]
                scaled[scaled < kth] = -float("inf")
            token = int(torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator))
        out.append(token)
        if state is None or window:  # a context model, or windows alone: feed one again
            ids.append(token)
            context = window or cast("Transformer", model).max_len
            logits, _ = model(torch.tensor([ids[-context:]], device=device))
        else:
            logits, state = model(torch.tensor([[token]], device=device), state)
    return decode([vocab[j] for j in out], mp.token_params)
