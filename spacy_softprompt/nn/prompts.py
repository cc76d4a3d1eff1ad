"""Learned prompt vectors: one block of ``prompt_length`` vectors per query row.

Input prompts overwrite the query part's slots in the input embeddings; deep
prompts (P-tuning v2 / prefix-style) add one block per layer, written over
the same positions at the input of every layer from the first prompt layer.
``reparametrize`` passes the table through a residual MLP (P-tuning), whose
output layer starts at zero so training begins from the initial vectors.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn


class PromptTable(nn.Module):
    def __init__(self, init: torch.Tensor, *, n_deep_layers: int, reparametrize: bool, input_prompts: bool = True):
        super().__init__()
        dim = init.shape[-1]
        # (P, N, D); deep late prompts have none: their first block is written at layer k
        self.vectors = nn.Parameter(init.clone()) if input_prompts else None
        self.deep = (
            nn.Parameter(init[:, None].repeat(1, n_deep_layers, 1, 1).clone()) if n_deep_layers else None
        )  # (P, L, N, D)
        self.reparam = (
            nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, dim)) if reparametrize else None
        )
        if self.reparam is not None:
            nn.init.zeros_(self.reparam[2].weight)
            nn.init.zeros_(self.reparam[2].bias)

    @property
    def length(self) -> int:
        table = self.vectors if self.vectors is not None else self.deep
        return int(table.shape[-2])

    @torch.no_grad()
    def insert_row(self, at: int, init: torch.Tensor) -> None:
        """A new query row (a type added after training) at row ``at``, starting at ``init``
        (N, D) at the input and at every deep layer; later rows move down one. The tables become
        new Parameters (an optimizer made before does not fit them: make a new one)."""
        def grown(table: torch.Tensor, row: torch.Tensor) -> nn.Parameter:
            row = row.to(table)[None]
            return nn.Parameter(torch.cat([table[:at], row, table[at:]]), requires_grad=table.requires_grad)

        if self.vectors is not None:
            self.vectors = grown(self.vectors, init)
        if self.deep is not None:
            self.deep = grown(self.deep, init[None].expand(self.deep.shape[1], -1, -1))

    def _shape(self, table: torch.Tensor) -> torch.Tensor:
        return table + self.reparam(table) if self.reparam is not None else table

    def input_prompts(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """``prompt_ids`` (B, R): each query's rows, one block after the other -> (B, R*N, D)."""
        return self._shape(self.vectors[prompt_ids]).flatten(1, 2)

    def layer_prompts(self, prompt_ids: torch.Tensor, index: int) -> torch.Tensor:
        """Prompts of the ``index``-th deep layer (counted from the first prompt layer), (B, R*N, D)."""
        return self._shape(self.deep[prompt_ids, index]).flatten(1, 2)


def write_slots(hidden: torch.Tensor, vectors: torch.Tensor, start: int) -> torch.Tensor:
    """``hidden`` with positions ``start .. start+N`` replaced by ``vectors`` (B, N, D)."""
    end = start + vectors.shape[1]
    return torch.cat([hidden[:, :start], vectors.to(hidden.dtype), hidden[:, end:]], dim=1)


def prompt_init_from_words(
    embeddings: nn.Embedding, word_ids: List[List[int]], length: int, mode: str, seed: int = 0
) -> torch.Tensor:
    """Initial prompt vectors: the embeddings of each query's label words, cycled to
    ``length`` (``vocab``), or random vectors with the embedding table's scale (``random``)."""
    weight = embeddings.weight.detach().float().cpu()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(word_ids), length, weight.shape[1]), generator=generator) * weight.std()
    if mode == "random":
        return noise
    if mode != "vocab":
        raise ValueError(f"prompt_init must be 'vocab' or 'random', not {mode!r}.")
    rows = []
    for ids in word_ids:
        ids = ids or [0]
        picked = torch.tensor([ids[i % len(ids)] for i in range(length)])
        rows.append(weight[picked])
    return torch.stack(rows) + 0.1 * noise
