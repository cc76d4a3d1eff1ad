"""Document classes: the classification head, pooling over windows, the loss.

A classification query reads one window like any other query; the collator
says which states represent each of its classes (``cat_pool``: the class's own
query part and the window's text). The head pools the text into one state per
class and matches it with the part (:class:`ClassHead`). Text pooling ``mean``
weighs every token alike; ``attention`` lets each class weigh the tokens by
their match with its query (the one line of a note that says "quit smoking"),
starting from the mean (uniform weights) and learning where to look.

With ``bag_of_words``, each class's logit also adds a weight per subword of
the window's text (a bag of subwords: one row of weights per class over the
backbone's vocabulary, counted once per occurrence in the window). That is the
half spaCy's TextCatEnsemble puts beside its transformer: a word such as
"tobacco" weighs the same wherever it sits, while the contextual states blur it
into a mean. The weights start at zero, so the head starts as it would without
them; they learn at the heads' rate (``head_lr_scale``). A class added after
training gets a row of zeros: only its question speaks for it, while (with
exclusive classes) the trained classes keep their word weights in the softmax.

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
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

POOLING = ("max", "mean")
TEXT_POOLING = ("mean", "attention")


class ClassHead(nn.Module):
    """Class logits from each column's part and text means (``pooled`` (B, K, 2, D)).

    With a query part (hard, soft, deep): score(k) = <tanh(T text_k), P part_k> / sqrt(H) + b,
    the text matched against the class's own part, as the packed span head matches spans
    against a type's part; one set of weights for every class, so a class is a query (its
    question or prompts), not an output column, and the part's state decides which
    direction of the text counts. Without a part (``none``, ``typed``): score(k) =
    w_k . tanh(T text) + b_k, one fixed output row per class."""

    def __init__(self, dim: int, width: int, n_labels: int, typed: bool, dropout: float, text_pooling: str = "mean",
                 vocab_size: int = 0):
        super().__init__()
        if text_pooling not in TEXT_POOLING:
            raise ValueError(f"cats_text_pooling must be one of {TEXT_POOLING}, not {text_pooling!r}.")
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
        self.attention = text_pooling == "attention"
        if self.attention:
            # token weights softmax(<q_k, K h_t>): K starts at zero, so every token weighs the same
            # (the mean) until training finds the tokens that tell the classes apart
            self.attn_key = nn.Linear(dim, width)
            nn.init.zeros_(self.attn_key.weight)
            nn.init.zeros_(self.attn_key.bias)
            if typed:
                self.attn_query = nn.Parameter(torch.randn(n_labels, width) / math.sqrt(width))
            else:
                self.attn_part = nn.Linear(dim, width)
        # bag of subwords: class x vocabulary weights, zero (no say) until trained; none: vocab_size 0
        self.words = nn.Parameter(torch.zeros(n_labels, vocab_size)) if vocab_size else None

    def forward(self, weights: torch.Tensor, hidden: torch.Tensor, words: Optional[torch.Tensor] = None,
                classes: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``weights`` (B, K, 2, S): per column, its part's and its text's positions (as mean
        weights); ``hidden`` (B, S, D) the window's states -> logits (B, K). With a bag of
        words: ``words`` (B, L) the window's subword ids (-1: padding), ``classes`` (B, K) the
        class index each column answers (-1: none)."""
        pooled = weights @ hidden[:, None]  # (B, K, 2, D): part and text means
        k = pooled.shape[1]
        text_state = self._attend(weights[:, :, 1], pooled[:, :, 0], hidden) if self.attention else pooled[:, :, 1]
        text = self.dropout(torch.tanh(self.dense(text_state)))  # (B, K, H)
        if self.typed:
            logits = (text * self.weight[:k].to(text.dtype)).sum(-1) + self.bias[:k].to(text.dtype)
        else:
            logits = (text * self.part(pooled[:, :, 0])).sum(-1) * self.scale + self.bias.to(text.dtype)
        if self.words is not None:
            logits = logits.float() + self._bag_of_words(words, classes)  # fp32: a half-precision sum rounds
        return logits

    def _bag_of_words(self, words: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(B, K): the summed weights of each window's subwords for the class of each column."""
        present = (words >= 0).to(self.words.dtype)
        per_class = (self.words[:, words.clamp(min=0)] * present).sum(-1)  # (C, B): every class, every window
        return per_class.t().gather(1, classes.clamp(min=0))

    def add_class(self) -> None:
        """One more class (appended last, as the task's class list grows): a zero row of word weights."""
        if self.words is not None:
            self.words = nn.Parameter(torch.cat([self.words.data, self.words.data.new_zeros(1, self.words.shape[1])]))

    def _attend(self, text_weights: torch.Tensor, part: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Each column's text state: its text tokens weighted by their match with its query."""
        k = text_weights.shape[1]
        query = self.attn_query[:k].to(hidden.dtype)[None] if self.typed else self.attn_part(part)  # (B|1, K, H)
        scores = torch.einsum("bkh,bsh->bks", query.expand(hidden.shape[0], -1, -1), self.attn_key(hidden))
        visible = text_weights > 0
        has_text = visible.any(-1, keepdim=True)  # a column with no text gets a zero state, as the mean does
        scores = scores.masked_fill(~visible, float("-inf")).masked_fill(~has_text, 0.0) * self.scale
        return (torch.softmax(scores, -1) * has_text) @ hidden  # (B, K, D)


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
    exclusive Doc is supervised when it gives one class the value 1, which says the others
    are 0 whether it names them or not). Exclusive: cross-entropy over the classes;
    multilabel: binary cross-entropy per given class; each averaged over supervised Docs."""
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
