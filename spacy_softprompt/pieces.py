"""Subwords of a Doc and the text windows that tile it.

Concept queries run over windows that tile the whole document with overlap,
so nothing is truncated; relation queries with input prompts run over one
window centred on their trigger, so an argument just across a tiling boundary
is still seen (late prompts use the tiling window that best centres it, to
share its lower layers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc


@dataclass
class DocPieces:
    """A Doc's subwords and, per spaCy token, its first and last subword (-1: none)."""

    ids: np.ndarray
    first: np.ndarray
    last: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.where(self.first >= 0, self.last - self.first + 1, 0)


def tokenize_doc(doc: Doc, tokenizer) -> DocPieces:
    n_tokens = len(doc)
    first = np.full(n_tokens, -1, dtype=np.int64)
    last = np.full(n_tokens, -1, dtype=np.int64)
    if not doc.text.strip():
        return DocPieces(np.zeros(0, dtype=np.int64), first, last)
    enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    char_to_token = np.full(len(doc.text) + 1, -1, dtype=np.int64)
    for token in doc:
        if not token.is_space:
            char_to_token[token.idx : token.idx + len(token.text)] = token.i
    for piece_index, (start, end) in enumerate(enc["offset_mapping"]):
        owners = char_to_token[start:end]
        owners = owners[owners >= 0]
        if len(owners) == 0:
            continue
        token_i = int(owners[0])
        if first[token_i] < 0:
            first[token_i] = piece_index
        last[token_i] = piece_index
    return DocPieces(np.asarray(enc["input_ids"], dtype=np.int64), first, last)


def tile_windows(counts: np.ndarray, budget: int, overlap: int) -> List[Tuple[int, int]]:
    """Token windows of at most ``budget`` subwords covering every token, consecutive
    windows sharing about ``overlap`` subwords. A window always holds at least one token."""
    n = len(counts)
    if n == 0:
        return [(0, 0)]
    windows: List[Tuple[int, int]] = []
    start = 0
    while True:
        used, end = 0, start
        while end < n and (end == start or used + counts[end] <= budget):
            used += counts[end]
            end += 1
        windows.append((start, end))
        if end >= n:
            return windows
        shared, next_start = 0, end
        while next_start > start + 1 and shared + counts[next_start - 1] <= overlap:
            shared += counts[next_start - 1]
            next_start -= 1
        start = next_start


def centred_window(counts: np.ndarray, start: int, end: int, budget: int) -> Tuple[int, int]:
    """Grow ``[start, end)`` one token at a time on alternate sides while it fits."""
    used = int(counts[start:end].sum())
    left, right = start, end
    grew = True
    while grew:
        grew = False
        if left > 0 and used + counts[left - 1] <= budget:
            left -= 1
            used += counts[left]
            grew = True
        if right < len(counts) and used + counts[right] <= budget:
            used += counts[right]
            right += 1
            grew = True
    return left, right


def best_tile(tiles: Sequence[Tuple[int, int]], start: int, end: int) -> Tuple[int, int]:
    """The tiling window holding ``[start, end)`` with the most context on its shorter side
    (the first window touching it, when the span is longer than any window)."""
    holding = [w for w in tiles if w[0] <= start and end <= w[1]]
    if not holding:
        return next((w for w in tiles if w[0] < end and start < w[1]), tiles[0])
    return max(holding, key=lambda w: min(start - w[0], w[1] - end))
