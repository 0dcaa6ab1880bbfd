"""A decoder-only Transformer over tokens, in the Music Transformer's line (Huang et al.,
"Music Transformer", ICLR 2019), with rotary position embeddings (Su et al., "RoFormer",
2021) standing in for relative attention: both make attention depend on the distance
between events, not on absolute positions. Pre-norm blocks, causal self-attention through
PyTorch's fused `scaled_dot_product_attention`, trained by the shared trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cadenza.models.specs import TransformerNet
from cadenza.models.token_lm import loss, sample  # noqa: F401 - the family interface


def rotary(x: torch.Tensor) -> torch.Tensor:
    """Rotate each (even, odd) pair of channels of (B, H, T, D) by an angle that grows with
    the position, at a frequency that falls with the channel (RoFormer eq. 34)."""
    _, _, t, d = x.shape
    freq = 10000 ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angle = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * freq  # (T, D/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.heads, self.dropout = net.heads, net.dropout
        self.norm1, self.norm2 = nn.LayerNorm(net.d_model), nn.LayerNorm(net.d_model)
        self.qkv = nn.Linear(net.d_model, 3 * net.d_model)
        self.proj = nn.Linear(net.d_model, net.d_model)
        self.ff = nn.Sequential(
            nn.Linear(net.d_model, net.ff),
            nn.GELU(),
            nn.Linear(net.ff, net.d_model),
            nn.Dropout(net.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(
            rotary(q),
            rotary(k),
            v,
            is_causal=True,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = x + self.proj(attn.transpose(1, 2).reshape(b, t, c))
        return x + self.ff(self.norm2(x))


def _init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class Transformer(nn.Module):
    def __init__(self, vocab_size: int, net: TransformerNet) -> None:
        super().__init__()
        self.max_len = net.max_len
        self.embed = nn.Embedding(vocab_size, net.d_model)
        self.blocks = nn.ModuleList(Block(net) for _ in range(net.layers))
        self.norm = nn.LayerNorm(net.d_model)
        self.head = nn.Linear(net.d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied, as in GPT-2 / nanoGPT
        self.apply(_init)  # GPT-2's small initial weights: unit-variance logits explode

    def forward(self, ids: torch.Tensor, state=None) -> tuple[torch.Tensor, None]:
        """ids (B, T) -> logits (B, T, V). No recurrent state: the window is the context."""
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)), None


def build(net: TransformerNet, info: dict) -> Transformer:
    return Transformer(len(info["vocab"]), net)
