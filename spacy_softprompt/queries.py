"""MRC queries: which questions a Doc asks, and over which text windows.

A *query* is one backbone sequence::

    [CLS] <query part> [SEP] <text window> [SEP]

The strategy (:mod:`.strategies`) decides the query part and the outputs it
answers into. Concept queries ask about every tiling window of a Doc;
relation queries ask, for each trigger mention, about the relation types its
concept type heads (the verbalizer map of :class:`~.schema.TaskSchema`). With
input prompts a relation query copies the trigger's subwords into its query
part; with late prompts (``prompt_layer > 0``) the trigger is known by the
marker vector the network adds to its tokens alone. Classification queries
(document classes, ``doc.cats``) ask about every tiling window, as concept
queries do; their answers are pooled over the windows of a Doc.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Dict, Iterable, List, Optional, Tuple

from spacy.tokens import Span

from .pieces import DocPieces, best_tile, centred_window, tile_windows
from .schema import TaskSchema
from .strategies import Labels, Strategy, strategy_class

MAX_TRIGGER_PIECES = 32
MAX_LEVITATED = 8  # triggers one packed relation query answers (one marker token each)
#: which types' parts a packed concept query holds: every type, or a tagged Doc's corpus's alone
PACKED_TYPES = ("all", "corpus")


def label_words(label: str) -> str:
    """``Adverse_Effect`` -> ``adverse effect``; ``StatusTime`` -> ``status time``; a
    corpus-qualified ``sdoh/Drug`` -> ``sdoh drug`` (the corpus keeps same-named types apart)."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label)
    return re.sub(r"[_\-./:]+", " ", spaced).strip().lower()


def default_query_text(label: str, relation: bool, cat: bool = False) -> str:
    if cat:
        return f"Is the text {label_words(label)}?"
    if relation:
        return f"Find the {label_words(label)} of"
    return f"Find {label_words(label)} mentions."


@dataclass
class Query:
    """One backbone sequence: a question about one window of one doc."""

    doc_index: int
    rows: Tuple[int, ...]  # prompt/question rows in its query part (concepts first, then relations)
    output: int  # first output class this query reads
    n_outputs: int  # how many output classes it reads
    window: Tuple[int, int]
    triggers: Tuple[Span, ...] = ()  # relation queries: the trigger(s) asked about
    relation: Optional[str] = None  # set when the query asks about one relation
    # Packed relation query: each trigger is a marker token of its own after the window
    # (it shares its trigger's position, reads the text and itself, and nothing reads it).
    levitated: bool = False
    gold: List[Tuple[int, int, int]] = field(default_factory=list)  # (start, end, class) in doc tokens
    cats: bool = False  # a classification query: its columns answer document classes
    # the output columns asked (None: all of output .. output + n_outputs); a Doc of a corpus
    # is asked only the types its corpus annotates (TaskSchema.asked)
    columns: Optional[Tuple[int, ...]] = None

    @property
    def is_relation(self) -> bool:
        return bool(self.triggers)


@dataclass(frozen=True)
class SpecialTokens:
    """The tokenizer's framing tokens; a decoder may lack [CLS]/[SEP] (then BOS/EOS)."""

    cls_id: Optional[int]
    sep_id: Optional[int]
    pad_id: int

    @classmethod
    def of(cls, tokenizer: Any) -> "SpecialTokens":
        return cls(
            _first_set(tokenizer.cls_token_id, tokenizer.bos_token_id),
            _first_set(tokenizer.sep_token_id, tokenizer.eos_token_id),
            _first_set(tokenizer.pad_token_id, tokenizer.eos_token_id, 0),
        )

    @property
    def prompt_start(self) -> int:
        """Position of the query part's first token."""
        return 1 if self.cls_id is not None else 0


class QueryBuilder:
    """The queries of one task (schema + strategy) over tokenized Docs."""

    def __init__(
        self,
        tokenizer: Any,
        schema: TaskSchema,
        *,
        strategy: str,
        prompt_length: int,
        max_length: int,
        window_overlap: int,
        query_texts: Optional[Dict[str, str]] = None,
        prompt_layer: int = 0,
        packed: bool = False,
        corpus_parts: bool = False,
        shuffle_types: bool = False,
    ):
        self.tokenizer = tokenizer
        self.corpus_parts = corpus_parts  # packed_types = "corpus"
        self.shuffle_types = shuffle_types
        self.schema = schema
        self.late = prompt_layer > 0
        self.prompt_layer = prompt_layer
        self.window_overlap = window_overlap
        self.special = SpecialTokens.of(tokenizer)
        labels = Labels(list(schema.concept_labels), list(schema.relation_labels), list(schema.cat_labels))
        texts = dict(query_texts or {})
        self.query_texts = texts  # label -> description: the hard prompt's question, learned prompts' start
        questions = [self.text_ids(texts.get(l, default_query_text(l, False))) for l in labels.concepts]
        questions += [self.text_ids(texts.get(l, default_query_text(l, True))) for l in labels.relations]
        questions += [self.text_ids(texts.get(l, default_query_text(l, False, cat=True))) for l in labels.cats]
        self.strategy: Strategy = strategy_class(strategy)(labels, prompt_length, questions, packed)
        model_max = getattr(tokenizer, "model_max_length", max_length) or max_length
        self.max_length = int(min(max_length, model_max if model_max < 100_000 else max_length))
        # Late prompts put every query, relations too, on the same tiling windows.
        jobs = self.strategy.concept_jobs() + self.strategy.cat_jobs() + (self.strategy.relation_jobs(labels.relations) if self.late else [])
        longest = max([self.strategy.query_part_len(rows) for rows, _, _, _ in jobs] or [0])
        longest += MAX_LEVITATED if self.strategy.packed else 0  # the markers share the windows
        self.concept_budget = self.max_length - self.n_special(longest) - longest
        if self.concept_budget < 8:
            raise ValueError(
                f"max_length={self.max_length} leaves {self.concept_budget} subwords of text per "
                "window after the query part; raise max_length or shorten prompts."
            )

    @property
    def labels(self) -> Labels:
        return self.strategy.labels

    def text_ids(self, text: str) -> List[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def n_special(self, query_len: int) -> int:
        """[CLS] and [SEP] around the window, and a [SEP] after a query part (input prompts)."""
        s = self.special
        n = (s.cls_id is not None) + (s.sep_id is not None)
        return n + (s.sep_id is not None and query_len > 0 and not self.late)

    # --- outputs ------------------------------------------------------------------
    def output_column(self, query: Query, label: str, trigger_index: int = 0) -> Optional[int]:
        """The output column that answers ``label`` (for the query's ``trigger_index``-th
        trigger) in ``query``; None: it does not ask. A packed relation query has one block
        of columns per trigger."""
        column = self.strategy.output_column(query.relation, query.is_relation, label, query.rows)
        if column is None or not query.levitated:
            return column
        return trigger_index * len(query.rows) + column

    def answer(self, query: Query, column: int) -> Tuple[str, Optional[Span]]:
        """Inverse of :meth:`output_column`: the label and the trigger an output column answers
        (a classification query's column: its document class)."""
        if query.cats:
            return self.strategy.cat_label(column, query.rows), None
        if not query.is_relation:
            return self.strategy.output_label(None, False, column, query.rows), None
        trigger_index, column = divmod(column, len(query.rows)) if query.levitated else (0, column)
        return self.strategy.output_label(query.relation, True, column, query.rows), query.triggers[trigger_index]

    # --- queries ------------------------------------------------------------------
    def tiles(self, pieces: DocPieces) -> List[Tuple[int, int]]:
        """Windows that tile the doc; they overlap by at most half a window, so that a long
        query part (packed types) leaves windows that still advance."""
        return tile_windows(pieces.counts, self.concept_budget, min(self.window_overlap, self.concept_budget // 2))

    def concept_queries(self, doc_index: int, pieces: DocPieces, asked: Optional[AbstractSet[str]] = None) -> List[Query]:
        """Every concept job on every tiling window; ``asked``: only these labels (a corpus's)."""
        jobs = self.strategy.concept_jobs()
        return self.ask_only([Query(doc_index, rows, out, n, w) for w in self.tiles(pieces) for rows, out, n, _ in jobs], asked)

    def ask_only(self, queries: List[Query], asked: Optional[AbstractSet[str]]) -> List[Query]:
        """The queries restricted to the output columns answering ``asked`` labels (None: all):
        a query asking none of them is dropped (one query per type), a query answering several
        types keeps only their columns (``columns``). Training and prediction share this, so a
        Doc is never supervised, nor answered, on a type its corpus does not annotate."""
        if asked is None:
            return queries
        kept = []
        for q in queries:
            columns = tuple(c for c in range(q.output, q.output + q.n_outputs) if self.answer(q, c)[0] in asked)
            if not columns:
                continue
            if self.corpus_parts and self.strategy.matches_type_parts and not q.is_relation:
                q.rows = tuple(q.rows[c] for c in columns)  # packed concepts: the asked types' parts alone
                q.n_outputs = len(q.rows)
            else:
                q.columns = None if len(columns) == q.n_outputs else columns
            kept.append(q)
        return kept

    def shuffle_parts(self, query: Query) -> None:
        """Training (``shuffle_types``): a packed concept query's parts in a new random order
        (spaCy seeds ``random``), its asked columns following their parts."""
        if not (self.shuffle_types and self.strategy.matches_type_parts) or query.is_relation or len(query.rows) < 2:
            return
        rows = list(query.rows)
        random.shuffle(rows)
        if query.columns is not None:
            query.columns = tuple(sorted(rows.index(query.rows[c]) for c in query.columns))
        query.rows = tuple(rows)

    def cat_queries(self, doc_index: int, pieces: DocPieces) -> List[Query]:
        """Classification queries: the strategy's class jobs on every tiling window."""
        jobs = self.strategy.cat_jobs()
        return [Query(doc_index, rows, out, n, w, cats=True) for w in self.tiles(pieces) for rows, out, n, _ in jobs]

    def relation_queries(
        self, doc_index: int, pieces: DocPieces, triggers: Iterable[Span], asked: Optional[AbstractSet[str]] = None
    ) -> List[Query]:
        """Relation queries of the triggers; ``asked``: only these relation labels (a corpus's)."""
        found = [
            t for t in triggers
            if self.schema.relations_for(t.label_) and pieces.first[t.start : t.end].max(initial=-1) >= 0
        ]
        if self.strategy.packed:
            return self.ask_only(self._levitated_queries(doc_index, pieces, found), asked)
        return self.ask_only(self._trigger_queries(doc_index, pieces, found), asked)

    def _trigger_queries(self, doc_index: int, pieces: DocPieces, triggers: List[Span]) -> List[Query]:
        """Unpacked relations: each trigger's relation jobs, in its own window."""
        queries: List[Query] = []
        tiles = self.tiles(pieces) if self.late else []
        for trigger in triggers:
            relations = self.schema.relations_for(trigger.label_)
            n_trigger = min(int(pieces.counts[trigger.start : trigger.end].sum()), MAX_TRIGGER_PIECES)
            for rows, output, n_out, relation in self.strategy.relation_jobs(relations):
                if self.late:
                    window = best_tile(tiles, trigger.start, trigger.end)
                else:
                    query_len = self.strategy.query_part_len(rows) + n_trigger
                    budget = self.max_length - self.n_special(query_len) - query_len
                    window = centred_window(pieces.counts, trigger.start, trigger.end, budget)
                queries.append(Query(doc_index, rows, output, n_out, window, (trigger,), relation))
        return queries

    def _levitated_queries(self, doc_index: int, pieces: DocPieces, triggers: List[Span]) -> List[Query]:
        """Packed relations: one query per tiling window asks every relation type of up to
        ``MAX_LEVITATED`` of its triggers (each trigger in the window that best centres it)."""
        tiles = self.tiles(pieces)
        by_tile: Dict[Tuple[int, int], List[Span]] = {}
        for trigger in triggers:
            by_tile.setdefault(best_tile(tiles, trigger.start, trigger.end), []).append(trigger)
        queries = []
        (rows, output, n_out, _), = self.strategy.relation_jobs(self.labels.relations)
        for window, found in by_tile.items():
            for i in range(0, len(found), MAX_LEVITATED):
                chunk = tuple(found[i : i + MAX_LEVITATED])
                queries.append(Query(doc_index, rows, 0, n_out * len(chunk), window, chunk, levitated=True))
        return queries


def batch_kind(query: Query) -> Tuple[int, bool, bool]:
    """Queries of one batch agree on this: their number of prompt rows (one block of
    prompts is written per query), whether they carry levitated markers, and whether
    they classify the document (another head answers them)."""
    return len(query.rows), query.levitated, query.cats


def query_size(query: Query, pieces: List[DocPieces]) -> Tuple[Tuple[int, bool, bool], int, int, int]:
    """Sort key for batching: the batch kind, window length; then the window itself, so that
    queries sharing a window share a batch (late prompts read each window's lower layers once)."""
    start, end = query.window
    return batch_kind(query), int(pieces[query.doc_index].counts[start:end].sum()), query.doc_index, start


def _first_set(*values: Optional[int]) -> Optional[int]:
    for value in values:
        if value is not None:
            return value
    return None
