"""From queries to padded arrays: the two layouts of a backbone batch.

*Input prompts* (``prompt_layer = 0``): one row per query,
``[CLS] <query part> [trigger subwords] [SEP] <window> [SEP]``.

*Late prompts* (``prompt_layer = k > 0``): a batch also lists its distinct
text windows (``[CLS] window [SEP]``) and query parts (``[CLS] query part``) on
their own, which the network's lower layers read once each, and a gather map
that assembles layer ``k``'s input ``[CLS] <query part> <window> [SEP]`` per
query from their states.

Both layouts end with the same per-query arrays: the sequence position of
each window token's first and last subword, the mask of candidate spans
(start token, width, output column) and, for training, the gold targets.
A batch of classification queries has, instead of candidate spans, the
positions whose states represent each of its classes (``cat_pool``), the class
each column answers and each window's subword ids (a bag of words reads them).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .pieces import DocPieces
from .queries import MAX_TRIGGER_PIECES, Query, QueryBuilder


@dataclass
class SharedInputs:
    """Late prompts: what the lower layers read once per batch, and how layer k's input
    is gathered from it. Rows of the gather source are ``[zero vector; window states
    (U*Sw, flattened); query-part states (Q*Sq, flattened)]``."""

    window_ids: np.ndarray  # (U, Sw) [CLS] window text [SEP]
    window_mask: np.ndarray  # (U, Sw)
    window_keys: List[bytes]  # cache key of each window: a digest of its subword ids
    query_ids: np.ndarray  # (Q, Sq) [CLS] query part, one per distinct prompt
    query_mask: np.ndarray  # (Q, Sq)
    query_keys: List[tuple]  # ("query", prompt rows...)
    query_prompts: np.ndarray  # (Q, R) prompt rows of each query part
    gather: np.ndarray  # (B, S) source row of each position of layer k's input


@dataclass
class Batch:
    """Padded numpy arrays for one backbone pass, and the queries they came from."""

    queries: List[Query]
    input_ids: np.ndarray  # (B, S) (late prompts: padding; the network reads ``shared``)
    attention_mask: np.ndarray  # (B, S)
    prompt_ids: np.ndarray  # (B, R) prompt rows of each query's part (R: 1, or all types when packed)
    marker: np.ndarray  # (B, S) 1.0 on trigger subwords inside the window
    token_starts: np.ndarray  # (B, T) sequence position of each window token's first subword
    token_ends: np.ndarray  # (B, T)
    span_mask: np.ndarray  # (B, T, W, K) candidate (start, width, class) is scored
    targets: Optional[np.ndarray]  # (B, T, W, K) gold answers, training only
    prompt_start: int
    shared: Optional[SharedInputs] = None  # late prompts only
    type_pool: Optional[np.ndarray] = None  # (B, K, S) packed: mean over output column k's own part
    levitated: Optional[np.ndarray] = None  # (B, S) bool: trigger marker tokens (packed relations)
    position_ids: Optional[np.ndarray] = None  # (B, S) with levitated markers: their triggers' positions
    cat_pool: Optional[np.ndarray] = None  # (B, K, 2, S) classification queries: column k's part, text
    cat_classes: Optional[np.ndarray] = None  # (B, K) class index each column answers (-1: none)
    cat_words: Optional[np.ndarray] = None  # (B, L) each window's text subword ids (-1: padding)

    def __len__(self) -> int:
        return len(self.queries)


class Collator:
    """Turns queries of one :class:`QueryBuilder` into :class:`Batch` es."""

    def __init__(self, builder: QueryBuilder, max_span_width: int):
        self.builder = builder
        self.strategy = builder.strategy
        self.special = builder.special
        self.max_span_width = max_span_width

    def collate(self, queries: Sequence[Query], pieces: Sequence[DocPieces], with_targets: bool) -> Batch:
        if self.builder.late:
            return self._collate_late(queries, pieces, with_targets)
        return self._collate_input(queries, pieces, with_targets)

    def prompt_only_ids(self) -> np.ndarray:
        """One sequence per prompt holding just ``[CLS]`` and the prompt slots
        (what deep prompts are calibrated on)."""
        s, length = self.special, self.strategy.prompt_length
        ids = np.full((self.strategy.n_prompt_rows, s.prompt_start + length), s.pad_id, dtype=np.int64)
        if s.cls_id is not None:
            ids[:, 0] = s.cls_id
        return ids

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
        """1.0 on the subwords of the query's one trigger inside its window (levitated
        markers are marked where they are appended)."""
        marker = np.zeros(length, dtype=np.float32)
        if q.is_relation and not q.levitated:
            (trigger,), (w_start, w_end) = q.triggers, q.window
            for i in range(max(trigger.start, w_start), min(trigger.end, w_end)):
                if present[i - w_start]:
                    marker[starts[i - w_start] : ends[i - w_start] + 1] = 1.0
        return marker

    @staticmethod
    def _trigger_positions(q: Query, starts: np.ndarray, present: np.ndarray) -> List[int]:
        """Sequence position of each levitated trigger's first subword in the window."""
        w_start = q.window[0]
        out = []
        for trigger in q.triggers:
            inside = [i - w_start for i in range(trigger.start, trigger.end) if 0 <= i - w_start < len(present)]
            seen = [i for i in inside if present[i]]
            out.append(int(starts[seen[0]]) if seen else 0)
        return out

    def _collate_input(self, queries: Sequence[Query], pieces: Sequence[DocPieces], with_targets: bool) -> Batch:
        rows, token_rows, marker_rows, lifted_rows, texts = [], [], [], [], []
        for q in queries:
            p = pieces[q.doc_index]
            ids: List[int] = [] if self.special.cls_id is None else [self.special.cls_id]
            ids += self.strategy.query_part_ids(q.rows, self.special.pad_id)
            if q.is_relation and not q.levitated:
                trigger = q.triggers[0]
                t_first = p.first[trigger.start : trigger.end]
                t_last = p.last[trigger.start : trigger.end]
                lo, hi = int(t_first[t_first >= 0].min()), int(t_last.max())
                ids += p.ids[lo : hi + 1][:MAX_TRIGGER_PIECES].tolist()
            if len(ids) > self.special.prompt_start and self.special.sep_id is not None:
                ids.append(self.special.sep_id)
            offset = len(ids)
            room = self.builder.max_length - offset - (self.special.sep_id is not None) - len(q.triggers) * q.levitated
            text, starts, ends, present = self._window_text(p, q.window, offset, room)
            texts.append(text)
            ids += text
            if self.special.sep_id is not None:
                ids.append(self.special.sep_id)
            lifted = self._trigger_positions(q, starts, present) if q.levitated else []
            at = list(range(len(ids), len(ids) + len(lifted)))
            ids += [ids[pos] for pos in lifted]  # a marker token starts as its trigger's subword
            rows.append(ids)
            token_rows.append((starts, ends, present))
            marker_rows.append(self._marker(q, len(ids), starts, ends, present))
            lifted_rows.append((at, lifted))
        input_ids, attention = _pad(rows, self.special.pad_id)
        return self._finish(queries, input_ids, attention, marker_rows, token_rows, lifted_rows, with_targets, None,
                            texts)

    def _collate_late(self, queries: Sequence[Query], pieces: Sequence[DocPieces], with_targets: bool) -> Batch:
        ps = self.special.prompt_start
        cls = [] if self.special.cls_id is None else [self.special.cls_id]
        sep = [] if self.special.sep_id is None else [self.special.sep_id]
        window_keys = list(dict.fromkeys((q.doc_index,) + tuple(q.window) for q in queries))
        window_index = {key: u for u, key in enumerate(window_keys)}
        window_rows, window_tokens, window_texts = [], {}, {}
        for key in window_keys:
            text, starts, ends, present = self._window_text(pieces[key[0]], key[1:], ps, self.builder.concept_budget)
            window_rows.append(cls + text + sep)
            window_tokens[key] = (starts, ends, present)
            window_texts[key] = text
        pad = self.special.pad_id
        parts = {rows: self.strategy.query_part_ids(rows, pad) for rows in dict.fromkeys(q.rows for q in queries)}
        # Deep late prompts write layer k's prompt slots themselves: no lower pass for them.
        prompt_keys = list(parts) if self.strategy.lower_layers_read_query_part(self.builder.prompt_layer) else []
        prompt_index = {pid: r for r, pid in enumerate(prompt_keys)}
        # shared slots that no input prompt fills (hard_deep, late: written at layer k) stay out of the
        # lower pass, so the question below k reads no pad tokens; layer k's input holds zeros there
        skip = 0 if self.strategy.has_input_prompts(self.builder.prompt_layer) else self.strategy.shared_slots
        query_rows = [cls + parts[pid][skip:] for pid in prompt_keys]
        window_ids, window_mask = _pad(window_rows, self.special.pad_id)
        query_ids, query_mask = _pad(query_rows, self.special.pad_id)
        n_windows, window_len = window_ids.shape
        query_len = query_ids.shape[1]
        part_len = max(len(part) for part in parts.values())  # query part slots in layer k's input
        n_lifted = max(len(q.triggers) * q.levitated for q in queries)
        seq_len = ps + part_len + max(len(r) - ps for r in window_rows) + n_lifted
        gather = np.zeros((len(queries), seq_len), dtype=np.int64)
        attention = np.zeros((len(queries), seq_len), dtype=np.int64)
        token_rows, marker_rows, lifted_rows = [], [], []
        query_base = 1 + n_windows * window_len
        for b, q in enumerate(queries):
            key = (q.doc_index,) + tuple(q.window)
            u = window_index[key]
            n_window = len(window_rows[u])
            gather[b, :ps] = 1 + u * window_len + np.arange(ps)
            attention[b, :ps] = 1
            n_part = len(parts[q.rows])
            attention[b, ps : ps + n_part] = 1
            if q.rows in prompt_index:
                r = prompt_index[q.rows]
                gather[b, ps + skip : ps + n_part] = query_base + r * query_len + ps + np.arange(n_part - skip)
            n_text = n_window - ps
            gather[b, ps + part_len : ps + part_len + n_text] = 1 + u * window_len + ps + np.arange(n_text)
            attention[b, ps + part_len : ps + part_len + n_text] = 1
            starts, ends, present = window_tokens[key]
            starts, ends = starts + part_len * present, ends + part_len * present
            token_rows.append((starts, ends, present))
            marker_rows.append(self._marker(q, seq_len, starts, ends, present))
            lifted = self._trigger_positions(q, starts, present) if q.levitated else []
            at = list(range(ps + part_len + n_text, ps + part_len + n_text + len(lifted)))
            gather[b, at] = gather[b, lifted]  # a marker starts as its trigger's state at layer k
            attention[b, at] = 1
            lifted_rows.append((at, lifted))
        shared = SharedInputs(
            window_ids, window_mask, [content_key(row) for row in window_rows], query_ids, query_mask,
            [("query",) + rows for rows in prompt_keys],
            np.asarray([self.strategy.prompt_rows(rows) for rows in prompt_keys], dtype=np.int64).reshape(
                len(prompt_keys), len(self.strategy.prompt_rows(queries[0].rows))), gather,
        )
        input_ids = np.full(attention.shape, self.special.pad_id, dtype=np.int64)
        texts = [window_texts[(q.doc_index,) + tuple(q.window)] for q in queries]
        return self._finish(queries, input_ids, attention, marker_rows, token_rows, lifted_rows, with_targets, shared,
                            texts)

    def _finish(self, queries, input_ids, attention, marker_rows, token_rows, lifted_rows, with_targets, shared,
                texts) -> Batch:
        """Token positions, candidate masks, pooling and targets, common to both layouts.
        ``lifted_rows``: per query, where its levitated markers sit and the trigger positions
        they copy; ``texts``: per query, the window subwords the backbone reads."""
        n, width = len(queries), self.max_span_width
        k = self.strategy.n_outputs
        if queries[0].cats:
            k = max(q.output + q.n_outputs for q in queries)
        elif self.strategy.matches_type_parts:  # columns are queries' own: type parts x triggers
            k = max(q.output + q.n_outputs for q in queries)
        seq_len = input_ids.shape[1]
        n_tok = max(1, max(len(t[0]) for t in token_rows))
        marker = np.zeros((n, seq_len), dtype=np.float32)
        token_starts = np.zeros((n, n_tok), dtype=np.int64)
        token_ends = np.zeros((n, n_tok), dtype=np.int64)
        span_mask = np.zeros((n, n_tok, width, k), dtype=bool)
        targets = np.zeros((n, n_tok, width, k), dtype=np.float32) if with_targets else None
        prompt_ids = np.array([self.strategy.prompt_rows(q.rows) for q in queries], dtype=np.int64).reshape(n, -1)
        cat_pool = np.zeros((n, k, 2, seq_len), dtype=np.float32) if queries[0].cats else None
        if cat_pool is not None:  # no candidate spans, no span targets: the document answers
            span_mask, targets = span_mask[..., :0], None
        pooled_types = self.strategy.matches_type_parts and cat_pool is None
        type_pool = np.zeros((n, k, seq_len), dtype=np.float32) if pooled_types else None
        any_lifted = any(at for at, _ in lifted_rows)
        levitated = np.zeros((n, seq_len), dtype=bool) if any_lifted else None
        position_ids = np.tile(np.arange(seq_len, dtype=np.int64), (n, 1)) if any_lifted else None
        for b, ((starts, ends, present), m, q, (marker_at, lifted)) in enumerate(
            zip(token_rows, marker_rows, queries, lifted_rows)
        ):
            marker[b, : len(m)] = m
            if lifted:
                marker[b, marker_at] = 1.0
                levitated[b, marker_at] = True
                position_ids[b, marker_at] = lifted
            t = len(starts)
            token_starts[b, :t] = starts
            token_ends[b, :t] = ends
            if cat_pool is not None:
                self._pool_cats(cat_pool[b], q, starts, ends, present)
                continue
            valid = _valid_spans(present, width)
            # a column the query does not ask (another corpus's type) is neither scored nor learned
            asked = list(q.columns) if q.columns is not None else slice(q.output, q.output + q.n_outputs)
            span_mask[b][:t, :, asked] = valid[:, :, None]  # [b] first: one advanced index keeps its axis
            if type_pool is not None:
                self._pool_types(type_pool[b], q, marker_at)
            if targets is not None:
                w_start, w_end = q.window
                for start, end, cls in q.gold:
                    if w_start <= start and end <= w_end and 0 < end - start <= width:
                        targets[b, start - w_start, end - start - 1, cls] = 1.0
        cat_classes, cat_words = self._cat_inputs(queries, texts, k) if cat_pool is not None else (None, None)
        return Batch(
            list(queries), input_ids, attention, prompt_ids, marker, token_starts, token_ends,
            span_mask, targets, self.special.prompt_start, shared, type_pool, levitated, position_ids, cat_pool,
            cat_classes, cat_words,
        )

    def _cat_inputs(self, queries: Sequence[Query], texts: Sequence[List[int]], k: int) -> Tuple[np.ndarray, np.ndarray]:
        """Classification queries: the class index of each output column (where its logit is
        pooled) and each window's text subwords (what a bag of words reads), -1 padded."""
        cats = self.builder.labels.cats
        classes = np.full((len(queries), k), -1, dtype=np.int64)
        for b, q in enumerate(queries):
            for column in range(q.output, q.output + q.n_outputs):
                classes[b, column] = cats.index(self.builder.answer(q, column)[0])
        words = np.full((len(queries), max(1, max(map(len, texts)))), -1, dtype=np.int64)
        for b, text in enumerate(texts):
            words[b, : len(text)] = text
        return classes, words

    def _part_spans(self, q: Query) -> List[Tuple[int, int]]:
        """Sequence positions ``[lo, hi)`` of each row's part in the query (both layouts
        put the query part right after ``[CLS]``; a shared prompt comes before the parts)."""
        at, spans = self.special.prompt_start + self.strategy.shared_slots, []
        for row in q.rows:
            n_part = len(self.strategy.part_ids(row, 0))
            spans.append((at, at + n_part))
            at += n_part
        return spans

    def _pool_cats(self, pool: np.ndarray, q: Query, starts: np.ndarray, ends: np.ndarray, present: np.ndarray) -> None:
        """Classification queries: column k is read from two means of last-layer states, its
        class's own part (the question or prompt slots; none without a part, ``none``) and the
        window's text subwords, which the head matches (:class:`~.nn.cats.ClassHead`). Not
        ``[CLS]``: a decoder's first position reads nothing, while the text reads the part in
        encoders and decoders alike, and the part is what makes a class a query rather than an
        output column."""
        if present.any():
            lo, hi = int(starts[present].min()), int(ends[present].max()) + 1
            pool[q.output : q.output + q.n_outputs, 1, lo:hi] = 1.0 / (hi - lo)
        parts = self._part_spans(q) if q.rows else []
        for column in range(q.output, q.output + q.n_outputs):
            if parts:
                lo, hi = parts[(column - q.output) % len(parts)]
                pool[column, 0, lo:hi] = 1.0 / max(1, hi - lo)

    def _pool_types(self, pool: np.ndarray, q: Query, marker_at: List[int]) -> None:
        """Packed queries: output column -> mean of its type's part (concepts), or half that
        and half its trigger's levitated marker (relations, one block of columns per trigger)."""
        spans = self._part_spans(q)
        for j, marker in enumerate(marker_at or [None]):
            for r, (lo, hi) in enumerate(spans):
                column = j * len(spans) + r
                share = 0.5 if marker is not None else 1.0
                pool[column, lo:hi] = share / max(1, hi - lo)
                if marker is not None:
                    pool[column, marker] = 0.5


def content_key(ids: Sequence[int]) -> bytes:
    """What a sequence's lower-layer states depend on (a frozen backbone): its ids."""
    return hashlib.blake2b(np.asarray(ids, dtype=np.int64).tobytes(), digest_size=16).digest()


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
