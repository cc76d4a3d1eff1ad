"""Scores every (start token, width) candidate span of a window, per output column.

:class:`SpanHead` has one fixed output column per type (or one binary output);
:class:`TypeMatchingSpanHead` scores each span against each type's own query-part
states (packed queries), so a type is a query, not a column: one pass answers
every type, and a type can be added without a new output weight.
"""
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

    def spans(self, hidden: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        """Pre-activation span features (B, T, W, H) from the first and last subword states."""
        dim = hidden.shape[-1]
        h_start = hidden.gather(1, starts[..., None].expand(-1, -1, dim))
        h_end = hidden.gather(1, ends[..., None].expand(-1, -1, dim))
        a, e = self.start(h_start), self.end(h_end)  # (B, T, H)
        n_tok = a.shape[1]
        idx = torch.arange(n_tok, device=a.device)[:, None] + torch.arange(self.max_span_width, device=a.device)
        e_shifted = e[:, idx.clamp(max=n_tok - 1)]  # (B, T, W, H)
        return a[:, :, None] + e_shifted + self.width.weight

    def forward(self, hidden: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, type_pool=None) -> torch.Tensor:
        return self.out(self.spans(hidden, starts, ends))  # (B, T, W, K)


class TypeMatchingSpanHead(SpanHead):
    """score(span, k) = <gelu(span features), T mean(h over type k's part)> / sqrt(H) + b.

    ``cosine``: score(span, k) = s cos(gelu(span features), T mean(...)) + b, with a learned
    scale s. A dot product lets a type speak as loud as its vector is long, and a type never
    trained on (a new description) gets a shorter one than the trained types, so its best spans
    stay below the threshold; cosines put every type, trained or new, on one scale.
    """

    def __init__(self, dim: int, width: int, max_span_width: int, dropout: float, cosine: bool = False):
        super().__init__(dim, width, max_span_width, 1, dropout)
        self.type_proj = nn.Linear(dim, width)
        self.scale = 1.0 / math.sqrt(width)
        # log s; s starts at 10, so a span must match its type by a cosine near 0.5 to clear the start bias
        self.log_scale = nn.Parameter(torch.full((1,), math.log(10.0))) if cosine else None  # 1-d: thinc steps no scalars

    def forward(self, hidden: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, type_pool=None) -> torch.Tensor:
        spans = self.dropout(self.out[0](self.spans(hidden, starts, ends)))  # (B, T, W, H)
        types = self.type_proj(type_pool.to(hidden.dtype) @ hidden)  # (B, K, H)
        if self.log_scale is None:
            return torch.einsum("btwh,bkh->btwk", spans, types) * self.scale + self.out[2].bias
        spans, types = nn.functional.normalize(spans.float(), dim=-1), nn.functional.normalize(types.float(), dim=-1)
        return torch.einsum("btwh,bkh->btwk", spans, types) * self.log_scale.exp() + self.out[2].bias
