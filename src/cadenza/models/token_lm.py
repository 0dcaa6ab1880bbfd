"""Token language model: embedding -> n recurrent layers (RNN / LSTM / GRU) -> softmax.

This is the model of seed 003 (Huang & Wu, "Deep Learning for Music": a 2-layer LSTM,
embedding 128, hidden 128, over chord tokens) and of seed 002 (an LSTM with hidden 64 over
pitch symbols with a `<next>` separator); `NetParams` selects the variant.

`sample` implements seed 003's generation: feed a prompt, then draw each next token either
greedily (with probability `greedy_prob`) or from the temperature-scaled, optionally top-k
filtered softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from cadenza.config import NetParams

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class TokenLM(nn.Module):
    def __init__(self, vocab_size: int, net: NetParams) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, net.embedding)
        self.rnn = CELLS[net.cell](
            net.embedding, net.hidden, num_layers=net.layers, batch_first=True,
            dropout=net.dropout if net.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(net.dropout)
        self.head = nn.Linear(net.hidden, vocab_size)

    def forward(self, ids: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """ids (B, T) -> logits (B, T, V), recurrent state."""
        hidden, state = self.rnn(self.embed(ids), state)
        return self.head(self.drop(hidden)), state


def build(vocab_size: int, net: NetParams) -> TokenLM:
    return TokenLM(vocab_size, net)


@torch.no_grad()
def sample(model: TokenLM, prompt: list[int], length: int, *, temperature: float, top_k: int,
           greedy_prob: float, banned: list[int], generator: torch.Generator) -> list[int]:
    """Continue `prompt` by exactly `length` tokens, never drawing a `banned` one."""
    model.eval()
    device = next(model.parameters()).device
    logits, state = model(torch.tensor([prompt], device=device))
    out: list[int] = []
    for _ in range(length):
        last = logits[0, -1].float().cpu()
        last[banned] = -float("inf")
        if torch.rand((), generator=generator).item() < greedy_prob:
            token = int(last.argmax())
        else:
            scaled = last / temperature
            if top_k:
                kth = torch.topk(scaled, min(top_k, scaled.numel())).values[-1]
                scaled[scaled < kth] = -float("inf")
            token = int(torch.multinomial(torch.softmax(scaled, -1), 1, generator=generator))
        out.append(token)
        logits, state = model(torch.tensor([[token]], device=device), state)
    return out
