"""Document classes: the classification head, pooling over windows, the loss.

A classification query reads one window like any other query; the collator
says which states represent each of its classes (``cat_pool``: the mean of
the class's own query part and the mean of the window's text). The head
matches the two (:class:`ClassHead`).

A Doc's score for a class is pooled over its windows (:func:`pool_windows`),
the same function in training and prediction. ``max`` (default): the evidence
for a class usually sits in one passage (a social history line in a long
note), and the window that holds it decides, whatever the number of windows
that say nothing; ``mean`` suits classes that are spread over the whole text.
Exclusive classes (one of N, spaCy's ``textcat``) take a softmax over the
pooled logits; multilabel classes (``textcat_multilabel``) a sigmoid each.
"""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

POOLING = ("max", "mean")


class ClassHead(nn.Module):
    """Class logits from each column's part and text means (``pooled`` (B, K, 2, D)).

    With a query part (hard, soft, deep): score(k) = <tanh(T text_k), P part_k> / sqrt(H) + b,
    the text matched against the class's own part, as the packed span head matches spans
    against a type's part; one set of weights for every class, so a class is a query (its
    question or prompts), not an output column, and the part's state decides which
    direction of the text counts. Without a part (``none``, ``typed``): score(k) =
    w_k . tanh(T text) + b_k, one fixed output row per class."""

    def __init__(self, dim: int, width: int, n_labels: int, typed: bool, dropout: float):
        super().__init__()
        self.dense = nn.Linear(dim, width)  # T: the text
        self.dropout = nn.Dropout(dropout)
        self.typed = typed
        if typed:
            self.weight = nn.Parameter(torch.randn(n_labels, width) / math.sqrt(width))
            self.bias = nn.Parameter(torch.zeros(n_labels))
        else:
            self.part = nn.Linear(dim, width)  # P: the class's part
            self.bias = nn.Parameter(torch.zeros(1))
        self.scale = 1.0 / math.sqrt(width)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``pooled`` (B, K, 2, D): per column, its part's and its text's mean -> logits (B, K)."""
        text = self.dropout(torch.tanh(self.dense(pooled[:, :, 1])))  # (B, K, H)
        k = pooled.shape[1]
        if self.typed:
            return (text * self.weight[:k].to(text.dtype)).sum(-1) + self.bias[:k].to(text.dtype)
        return (text * self.part(pooled[:, :, 0])).sum(-1) * self.scale + self.bias.to(text.dtype)


def pool_windows(values: torch.Tensor, cells: torch.Tensor, n_cells: int, pooling: str) -> torch.Tensor:
    """Pool window logits ``values`` (E,) into ``n_cells`` (doc x class) cells; ``cells``
    (E,) says which cell each value belongs to. Every cell gets at least one value (every
    Doc has a window, every window asks every class)."""
    if pooling not in POOLING:
        raise ValueError(f"cats_pooling must be one of {POOLING}, not {pooling!r}.")
    out = values.new_zeros(n_cells)
    return out.scatter_reduce(0, cells, values, reduce="amax" if pooling == "max" else "mean", include_self=False)


def probabilities(pooled: torch.Tensor, exclusive: bool) -> torch.Tensor:
    """(docs, classes) pooled logits -> ``doc.cats`` scores."""
    return torch.softmax(pooled, -1) if exclusive else torch.sigmoid(pooled)


def cats_loss(
    batch_logits: Sequence[torch.Tensor],
    entries: Sequence[Tuple[int, int, int, int, int]],
    gold: torch.Tensor,
    known: torch.Tensor,
    exclusive: bool,
    pooling: str,
) -> Tuple[float, List[torch.Tensor]]:
    """Loss over the Docs of one update and its gradient for each batch's logits.

    ``entries``: (batch, row, column, doc, class) of every answered window logit;
    ``gold`` / ``known`` (docs, classes): gold values and which of them the reference
    gives (spaCy's textcat: a class missing from ``doc.cats`` is not supervised; an
    exclusive Doc is supervised when it gives exactly one class the value 1). Exclusive:
    cross-entropy over the classes; multilabel: binary cross-entropy per class; each
    averaged over supervised Docs."""
    xs = [x.detach().float().requires_grad_(True) for x in batch_logits]
    n_docs, n_labels = gold.shape
    index = torch.as_tensor(entries, dtype=torch.long, device=gold.device).reshape(-1, 5)
    values = torch.stack([xs[int(i)][int(r), int(c)] for i, r, c in index[:, :3].tolist()])
    pooled = pool_windows(values, index[:, 3] * n_labels + index[:, 4], n_docs * n_labels, pooling)
    pooled = pooled.reshape(n_docs, n_labels)
    if exclusive:
        rows = ((gold * known).sum(-1) == 1).nonzero().flatten()  # one class named; the others are 0
        loss = F.cross_entropy(pooled[rows], gold[rows].argmax(-1), reduction="sum") / max(1, len(rows))
    else:
        n = int(known.any(-1).sum())
        loss = F.binary_cross_entropy_with_logits(pooled, gold, weight=known.to(pooled.dtype), reduction="sum")
        loss = loss / max(1, n)
    if not loss.requires_grad:  # nothing supervised
        return 0.0, [torch.zeros_like(x) for x in xs]
    loss.backward()
    return float(loss.detach()), [x.grad if x.grad is not None else torch.zeros_like(x) for x in xs]
