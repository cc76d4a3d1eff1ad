"""From Docs to backbone inputs: subwords, windows, MRC queries and their batches.

A *query* is one backbone sequence::

    [CLS] <query part> [SEP] <text window> [SEP]

The query part depends on the strategy: nothing (``none``), the words of a
natural-language question (``hard``), or ``prompt_length`` slots that the
network fills with learned vectors (``soft``, ``deep``). Relation queries
append the trigger mention's own subwords to the query part, and the network
adds a learned marker vector to the trigger's tokens inside the window.

Concept queries run over windows that tile the whole document with overlap,
so nothing is truncated; relation queries run over one window centred on
their trigger, so an argument just across a tiling boundary is still seen.
Candidate answers are spans of spaCy tokens up to ``max_span_width`` long.

With late prompts (``prompt_layer > 0``) a batch also lists its distinct text
windows (``[CLS] window [SEP]``) and query parts (``[CLS] query part``) on their
own, which the network's lower layers read once each, and a gather map that
assembles layer ``k``'s input ``[CLS] <query part> <window> [SEP]`` per query.
Relation queries then use the tiling window that best centres their trigger
(so they share its lower layers with the concept queries), and the trigger is
known by the marker alone, not by copies of its subwords.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc, Span

from .schema import TaskSchema

STRATEGIES = ("none", "hard", "soft", "deep")
MAX_TRIGGER_PIECES = 32


def label_words(label: str) -> str:
    """``Adverse_Effect`` -> ``adverse effect``; ``StatusTime`` -> ``status time``."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label)
    return re.sub(r"[_\-./]+", " ", spaced).strip().lower()


def default_query_text(label: str, relation: bool) -> str:
    if relation:
        return f"Find the {label_words(label)} of"
    return f"Find {label_words(label)} mentions."


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


@dataclass
class Query:
    """One backbone sequence: a question about one window of one doc."""

    doc_index: int
    prompt_id: int  # row of the prompt/question table (concepts first, then relations)
    output: int  # first output class this query reads
    n_outputs: int  # how many output classes it reads
    window: Tuple[int, int]
    trigger: Optional[Span] = None  # the trigger span, for relation queries
    relation: Optional[str] = None  # set when the query asks about one relation
    gold: List[Tuple[int, int, int]] = field(default_factory=list)  # (start, end, class) in doc tokens


@dataclass
class SharedInputs:
    """Late prompts: what the lower layers read once per batch, and how layer k's input
    is gathered from it. Rows of the gather source are ``[zero vector; window states
    (U*Sw, flattened); query-part states (Q*Sq, flattened)]``."""

    window_ids: np.ndarray  # (U, Sw) [CLS] window text [SEP]
    window_mask: np.ndarray  # (U, Sw)
    window_keys: List[tuple]  # (doc index, start, end): cache key of each window
    query_ids: np.ndarray  # (Q, Sq) [CLS] query part, one per distinct prompt
    query_mask: np.ndarray  # (Q, Sq)
    query_keys: List[tuple]  # ("query", prompt id)
    query_prompts: np.ndarray  # (Q,) prompt row of each query part
    gather: np.ndarray  # (B, S) source row of each position of layer k's input


@dataclass
class Batch:
    """Padded numpy arrays for one backbone pass, and the queries they came from."""

    queries: List[Query]
    input_ids: np.ndarray  # (B, S) (late prompts: padding; the network reads ``shared``)
    attention_mask: np.ndarray  # (B, S)
    prompt_ids: np.ndarray  # (B,)
    marker: np.ndarray  # (B, S) 1.0 on trigger subwords inside the window
    token_starts: np.ndarray  # (B, T) sequence position of each window token's first subword
    token_ends: np.ndarray  # (B, T)
    span_mask: np.ndarray  # (B, T, W, K) candidate (start, width, class) is scored
    targets: Optional[np.ndarray]  # (B, T, W, K) gold answers, training only
    prompt_start: int
    shared: Optional[SharedInputs] = None  # late prompts only
    cache: Optional[dict] = None  # inference: lower-layer states kept across batches

    def __len__(self) -> int:
        return len(self.queries)


class QueryEncoder:
    """Builds the queries of the chosen strategy and turns them into Batches."""

    def __init__(
        self,
        tokenizer,
        schema: TaskSchema,
        *,
        strategy: str,
        prompt_length: int,
        max_length: int,
        window_overlap: int,
        max_span_width: int,
        query_texts: Optional[Dict[str, str]] = None,
        prompt_layer: int = 0,
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown prompt strategy {strategy!r}; choose one of {STRATEGIES}.")
        self.tokenizer = tokenizer
        self.schema = schema
        self.strategy = strategy
        self.late = prompt_layer > 0
        self.prompt_length = prompt_length if strategy in ("soft", "deep") else 0
        self.max_span_width = max_span_width
        self.window_overlap = window_overlap
        self.concepts = list(schema.concept_labels)
        self.relations = list(schema.relation_labels)
        self.cls_id = _first_set(tokenizer.cls_token_id, tokenizer.bos_token_id)
        self.sep_id = _first_set(tokenizer.sep_token_id, tokenizer.eos_token_id)
        self.pad_id = _first_set(tokenizer.pad_token_id, tokenizer.eos_token_id, 0)
        texts = dict(query_texts or {})
        self.question_ids: List[List[int]] = []
        if strategy == "hard":
            for label in self.concepts:
                self.question_ids.append(self.text_ids(texts.get(label, default_query_text(label, False))))
            for label in self.relations:
                self.question_ids.append(self.text_ids(texts.get(label, default_query_text(label, True))))
        model_max = getattr(tokenizer, "model_max_length", max_length) or max_length
        self.max_length = int(min(max_length, model_max if model_max < 100_000 else max_length))
        # Late prompts put every query, relations too, on the same tiling windows.
        n_sharing = self.n_prompts if self.late else len(self.concepts)
        concept_query_len = max([self._query_part_len(i, 0) for i in range(n_sharing)] or [0])
        self.concept_budget = self.max_length - self._n_special(concept_query_len) - concept_query_len
        if self.concept_budget < 8:
            raise ValueError(
                f"max_length={self.max_length} leaves {self.concept_budget} subwords of text per "
                "window after the query part; raise max_length or shorten prompts."
            )

    # --- layout -----------------------------------------------------------------
    @property
    def n_prompts(self) -> int:
        return len(self.concepts) + len(self.relations)

    @property
    def n_outputs(self) -> int:
        """Typed outputs for ``none`` (one pass answers every type); one binary output otherwise."""
        return self.n_prompts if self.strategy == "none" else 1

    @property
    def prompt_start(self) -> int:
        return 1 if self.cls_id is not None else 0

    def text_ids(self, text: str) -> List[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_only_ids(self) -> np.ndarray:
        """One sequence per prompt holding just ``[CLS]`` and the prompt slots
        (what deep prompts are calibrated on)."""
        ids = np.full((self.n_prompts, self.prompt_start + self.prompt_length), self.pad_id, dtype=np.int64)
        if self.cls_id is not None:
            ids[:, 0] = self.cls_id
        return ids

    def _query_part_len(self, prompt_id: int, trigger_len: int) -> int:
        if self.strategy == "hard":
            return len(self.question_ids[prompt_id]) + trigger_len
        return self.prompt_length + trigger_len

    def _n_special(self, query_len: int) -> int:
        """[CLS] and [SEP] around the window, and a [SEP] after a query part (input prompts)."""
        n = (self.cls_id is not None) + (self.sep_id is not None)
        return n + (self.sep_id is not None and query_len > 0 and not self.late)

    def query_part_ids(self, prompt_id: int) -> List[int]:
        """The query part's own tokens: the question (hard) or the slots the prompts fill."""
        if self.strategy == "hard":
            return list(self.question_ids[prompt_id])
        return [self.pad_id] * self.prompt_length

    def output_column(self, query: Query, label: str) -> Optional[int]:
        """The output column that answers ``label`` in ``query`` (None: it does not ask)."""
        if query.trigger is None:
            if label not in self.concepts:
                return None
            if self.strategy == "none":
                return self.concepts.index(label)
            return 0 if self.concepts[query.prompt_id] == label else None
        if label not in self.relations:
            return None
        if self.strategy == "none":
            return query.output + self.relations.index(label)
        return 0 if query.relation == label else None

    def output_label(self, query: Query, column: int) -> str:
        """Inverse of :meth:`output_column`."""
        if query.trigger is not None:
            return query.relation if query.relation is not None else self.relations[column - query.output]
        return self.concepts[column] if self.strategy == "none" else self.concepts[query.prompt_id]

    # --- queries ----------------------------------------------------------------
    def concept_queries(self, doc_index: int, pieces: DocPieces) -> List[Query]:
        windows = tile_windows(pieces.counts, self.concept_budget, self.window_overlap)
        if self.strategy == "none":
            return [Query(doc_index, 0, 0, len(self.concepts), w) for w in windows]
        return [
            Query(doc_index, c, 0, 1, w) for w in windows for c in range(len(self.concepts))
        ]

    def relation_queries(self, doc_index: int, pieces: DocPieces, triggers: Iterable[Span]) -> List[Query]:
        queries: List[Query] = []
        n_concepts = len(self.concepts)
        tiles = tile_windows(pieces.counts, self.concept_budget, self.window_overlap) if self.late else []
        for trigger in triggers:
            relations = self.schema.relations_for(trigger.label_)
            if not relations or pieces.first[trigger.start : trigger.end].max(initial=-1) < 0:
                continue
            n_trigger = min(int(pieces.counts[trigger.start : trigger.end].sum()), MAX_TRIGGER_PIECES)
            if self.strategy == "none":
                jobs = [(n_concepts, n_concepts, len(self.relations), None)]
            else:
                jobs = [(n_concepts + self.relations.index(r), 0, 1, r) for r in relations]
            for prompt_id, output, n_out, relation in jobs:
                if self.late:
                    window = best_tile(tiles, trigger.start, trigger.end)
                else:
                    query_len = self._query_part_len(prompt_id, n_trigger)
                    budget = self.max_length - self._n_special(query_len) - query_len
                    window = centred_window(pieces.counts, trigger.start, trigger.end, budget)
                queries.append(Query(doc_index, prompt_id, output, n_out, window, trigger, relation))
        return queries

    # --- batches ----------------------------------------------------------------
    def _window_text(self, p: DocPieces, window: Tuple[int, int], offset: int, budget: int):
        """The window's subwords, and per window token its first/last subword's position
        once the subwords are placed at ``offset`` (and whether it has subwords at all)."""
        w_start, w_end = window
        firsts, lasts = p.first[w_start:w_end], p.last[w_start:w_end]
        present = firsts >= 0
        if not present.any():
            zeros = np.zeros(w_end - w_start, dtype=np.int64)
            return [], zeros, zeros, present
        lo = int(firsts[present].min())
        hi = min(int(lasts.max()), lo + budget - 1)  # only a single over-long token is cut
        starts = np.where(present, np.minimum(firsts - lo, hi - lo) + offset, 0)
        ends = np.where(present, np.minimum(lasts - lo, hi - lo) + offset, 0)
        return p.ids[lo : hi + 1].tolist(), starts, ends, present

    def _marker(self, q: Query, length: int, starts: np.ndarray, ends: np.ndarray, present: np.ndarray) -> np.ndarray:
        """1.0 on the subwords of the query's trigger inside its window."""
        marker = np.zeros(length, dtype=np.float32)
        if q.trigger is not None:
            w_start, w_end = q.window
            for i in range(max(q.trigger.start, w_start), min(q.trigger.end, w_end)):
                if present[i - w_start]:
                    marker[starts[i - w_start] : ends[i - w_start] + 1] = 1.0
        return marker

    def collate(self, queries: Sequence[Query], pieces: Sequence[DocPieces], with_targets: bool) -> Batch:
        if self.late:
            return self._collate_late(queries, pieces, with_targets)
        rows, token_rows, marker_rows = [], [], []
        for q in queries:
            p = pieces[q.doc_index]
            ids: List[int] = [] if self.cls_id is None else [self.cls_id]
            ids += self.query_part_ids(q.prompt_id)
            if q.trigger is not None:
                t_first = p.first[q.trigger.start : q.trigger.end]
                t_last = p.last[q.trigger.start : q.trigger.end]
                lo, hi = int(t_first[t_first >= 0].min()), int(t_last.max())
                ids += p.ids[lo : hi + 1][:MAX_TRIGGER_PIECES].tolist()
            if len(ids) > self.prompt_start and self.sep_id is not None:
                ids.append(self.sep_id)
            offset = len(ids)
            text, starts, ends, present = self._window_text(
                p, q.window, offset, self.max_length - offset - (self.sep_id is not None)
            )
            ids += text
            if self.sep_id is not None:
                ids.append(self.sep_id)
            rows.append(ids)
            token_rows.append((starts, ends, present))
            marker_rows.append(self._marker(q, len(ids), starts, ends, present))
        input_ids, attention = _pad(rows, self.pad_id)
        return self._finish(queries, input_ids, attention, marker_rows, token_rows, with_targets, None)

    def _collate_late(self, queries: Sequence[Query], pieces: Sequence[DocPieces], with_targets: bool) -> Batch:
        ps = self.prompt_start
        cls = [] if self.cls_id is None else [self.cls_id]
        sep = [] if self.sep_id is None else [self.sep_id]
        window_keys = list(dict.fromkeys((q.doc_index,) + tuple(q.window) for q in queries))
        window_index = {key: u for u, key in enumerate(window_keys)}
        window_rows, window_tokens = [], {}
        for key in window_keys:
            text, starts, ends, present = self._window_text(pieces[key[0]], key[1:], ps, self.concept_budget)
            window_rows.append(cls + text + sep)
            window_tokens[key] = (starts, ends, present)
        parts = {pid: self.query_part_ids(pid) for pid in dict.fromkeys(q.prompt_id for q in queries)}
        # Deep prompts write layer k's prompt slots themselves: no lower pass for them.
        prompt_keys = list(parts) if self.strategy in ("soft", "hard") else []
        prompt_index = {pid: r for r, pid in enumerate(prompt_keys)}
        query_rows = [cls + parts[pid] for pid in prompt_keys]
        window_ids, window_mask = _pad(window_rows, self.pad_id)
        query_ids, query_mask = _pad(query_rows, self.pad_id)
        n_windows, window_len = window_ids.shape
        query_len = query_ids.shape[1]
        part_len = max(len(part) for part in parts.values())  # query part slots in layer k's input
        seq_len = ps + part_len + max(len(r) - ps for r in window_rows)
        gather = np.zeros((len(queries), seq_len), dtype=np.int64)
        attention = np.zeros((len(queries), seq_len), dtype=np.int64)
        token_rows, marker_rows = [], []
        query_base = 1 + n_windows * window_len
        for b, q in enumerate(queries):
            key = (q.doc_index,) + tuple(q.window)
            u = window_index[key]
            n_window = len(window_rows[u])
            gather[b, :ps] = 1 + u * window_len + np.arange(ps)
            attention[b, :ps] = 1
            n_part = len(parts[q.prompt_id])
            attention[b, ps : ps + n_part] = 1
            if q.prompt_id in prompt_index:
                r = prompt_index[q.prompt_id]
                gather[b, ps : ps + n_part] = query_base + r * query_len + ps + np.arange(n_part)
            n_text = n_window - ps
            gather[b, ps + part_len : ps + part_len + n_text] = 1 + u * window_len + ps + np.arange(n_text)
            attention[b, ps + part_len : ps + part_len + n_text] = 1
            starts, ends, present = window_tokens[key]
            starts, ends = starts + part_len * present, ends + part_len * present
            token_rows.append((starts, ends, present))
            marker_rows.append(self._marker(q, seq_len, starts, ends, present))
        shared = SharedInputs(
            window_ids, window_mask, window_keys, query_ids, query_mask,
            [("query", pid) for pid in prompt_keys], np.asarray(prompt_keys, dtype=np.int64), gather,
        )
        input_ids = np.full(attention.shape, self.pad_id, dtype=np.int64)
        return self._finish(queries, input_ids, attention, marker_rows, token_rows, with_targets, shared)

    def _finish(self, queries, input_ids, attention, marker_rows, token_rows, with_targets, shared) -> Batch:
        """Token positions, candidate masks and targets, common to both layouts."""
        n, width, k = len(queries), self.max_span_width, self.n_outputs
        seq_len = input_ids.shape[1]
        n_tok = max(1, max(len(t[0]) for t in token_rows))
        marker = np.zeros((n, seq_len), dtype=np.float32)
        token_starts = np.zeros((n, n_tok), dtype=np.int64)
        token_ends = np.zeros((n, n_tok), dtype=np.int64)
        span_mask = np.zeros((n, n_tok, width, k), dtype=bool)
        targets = np.zeros((n, n_tok, width, k), dtype=np.float32) if with_targets else None
        prompt_ids = np.array([q.prompt_id for q in queries], dtype=np.int64)
        for b, ((starts, ends, present), m, q) in enumerate(zip(token_rows, marker_rows, queries)):
            marker[b, : len(m)] = m
            t = len(starts)
            token_starts[b, :t] = starts
            token_ends[b, :t] = ends
            valid = _valid_spans(present, width)
            span_mask[b, :t, :, q.output : q.output + q.n_outputs] = valid[:, :, None]
            if targets is not None:
                w_start, w_end = q.window
                for start, end, cls in q.gold:
                    if w_start <= start and end <= w_end and 0 < end - start <= width:
                        targets[b, start - w_start, end - start - 1, cls] = 1.0
        return Batch(
            list(queries), input_ids, attention, prompt_ids, marker, token_starts, token_ends,
            span_mask, targets, self.prompt_start, shared,
        )


def best_tile(tiles: Sequence[Tuple[int, int]], start: int, end: int) -> Tuple[int, int]:
    """The tiling window holding ``[start, end)`` with the most context on its shorter side
    (the first window touching it, when the span is longer than any window)."""
    holding = [w for w in tiles if w[0] <= start and end <= w[1]]
    if not holding:
        return next((w for w in tiles if w[0] < end and start < w[1]), tiles[0])
    return max(holding, key=lambda w: min(start - w[0], w[1] - end))


def _pad(rows: Sequence[List[int]], pad_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """Right-padded ids and their attention mask."""
    width = max((len(r) for r in rows), default=0)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def _valid_spans(present: np.ndarray, width: int) -> np.ndarray:
    """(T, W) mask: span from token t of width w+1 stays inside the window and both its
    first and last token have subwords (never starts or ends on whitespace)."""
    t = len(present)
    ends = np.arange(t)[:, None] + np.arange(width)[None, :]
    inside = ends < t
    ends = np.minimum(ends, max(t - 1, 0))
    return inside & present[:, None] & present[ends] if t else np.zeros((0, width), dtype=bool)


def _first_set(*values: Optional[int]) -> Optional[int]:
    for value in values:
        if value is not None:
            return value
    return None
