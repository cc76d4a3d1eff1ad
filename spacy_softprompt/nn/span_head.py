"""Scores every (start token, width) candidate span of a window, per output column."""
from __future__ import annotations

import math

import torch
from torch import nn


class SpanHead(nn.Module):
    """score(i, w) = out(gelu(S h_first(i) + E h_last(i+w) + width(w)))."""

    def __init__(self, dim: int, width: int, max_span_width: int, n_outputs: int, dropout: float):
        super().__init__()
        self.start = nn.Linear(dim, width)
        self.end = nn.Linear(dim, width)
        self.width = nn.Embedding(max_span_width, width)
        self.out = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Linear(width, n_outputs))
        # Answers are rare among candidates: start every span at p = 0.01, so an
        # untrained model predicts nothing instead of half of all spans.
        nn.init.constant_(self.out[2].bias, math.log(0.01 / 0.99))
        self.max_span_width = max_span_width

    @property
    def dropout(self) -> nn.Dropout:
        return self.out[1]

    def forward(self, hidden: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        dim = hidden.shape[-1]
        h_start = hidden.gather(1, starts[..., None].expand(-1, -1, dim))
        h_end = hidden.gather(1, ends[..., None].expand(-1, -1, dim))
        a, e = self.start(h_start), self.end(h_end)  # (B, T, H)
        n_tok = a.shape[1]
        idx = torch.arange(n_tok, device=a.device)[:, None] + torch.arange(self.max_span_width, device=a.device)
        e_shifted = e[:, idx.clamp(max=n_tok - 1)]  # (B, T, W, H)
        return self.out(a[:, :, None] + e_shifted + self.width.weight)  # (B, T, W, K)
