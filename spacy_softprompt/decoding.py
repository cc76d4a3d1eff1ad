"""From span probabilities to concepts and relations on the Doc.

Scores of one candidate from overlapping windows are merged by maximum. A
relation query's hits are kept only for relations its trigger's type heads.

One rule for relation arguments: **every relation argument is a concept.**
When a relation's tail was not itself predicted as a concept, it is added to
the span group with the tail type the schema allows (the best-scoring
predicted type at that span if any, else the most frequent allowed type) and
the relation's score. So ``doc.spans[spans_key]``, ``doc.ents``, ``evaluate``,
``score()`` and ``export-brat`` all see the same set of concepts.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
from spacy.tokens import Doc, Span

from .collate import Batch
from .relations import Relation
from .schema import TaskSchema

Concept = Tuple[int, int, str, float]  # start token, end token, label, score
Found = Tuple[Tuple[int, int, str], str, Tuple[int, int], float]  # head, label, tail, score


@dataclass
class Predictions:
    """Per doc: concepts and relations, in token offsets."""

    concepts: List[List[Concept]]
    relations: List[List[Found]] = field(default_factory=list)
    cats: List[Dict[str, float]] = field(default_factory=list)  # per doc: class -> score (none: no classes)


def cat_entries(batch: Batch) -> List[Tuple[int, int, int, int]]:
    """(row, column, doc, class index) of every class a batch of classification queries
    answers: the cells its logits are pooled into (:func:`~.nn.cats.pool_windows`)."""
    return [
        (b, column, q.doc_index, int(batch.cat_classes[b, column]))
        for b, q in enumerate(batch.queries)
        for column in range(q.output, q.output + q.n_outputs)
    ]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def collect_hits(builder: Any, batch: Batch, logits: np.ndarray, threshold: float, hits: Dict[tuple, float],
                 label_thresholds: Optional[Mapping[str, float]] = None) -> None:
    """Add the batch's candidates with probability >= ``threshold`` (or their label's own, in
    ``label_thresholds``) to ``hits`` (max over windows).

    Keys: ``(doc, start, end, label)`` for concepts, plus the trigger
    ``(start, end, label)`` for relations."""
    probs = sigmoid(logits)
    own = {label: np.float32(p) for label, p in (label_thresholds or {}).items()}
    lowest = min([np.float32(threshold), *own.values()])
    for b, t, w, k in zip(*np.nonzero((probs >= lowest) & batch.span_mask)):
        q = batch.queries[b]
        start = q.window[0] + int(t)
        label, trigger = builder.answer(q, int(k))
        if own and probs[b, t, w, k] < own.get(label, np.float32(threshold)):
            continue
        key: tuple = (q.doc_index, start, start + int(w) + 1, label)
        if trigger is not None:
            if label not in builder.schema.relations_for(trigger.label_):
                continue
            key += ((trigger.start, trigger.end, trigger.label_),)
        score = float(probs[b, t, w, k])
        if score > hits.get(key, -1.0):
            hits[key] = score


def concepts_by_doc(hits: Dict[tuple, float], n_docs: int) -> List[List[Concept]]:
    concepts: List[List[Concept]] = [[] for _ in range(n_docs)]
    for (doc_i, start, end, label), score in sorted(hits.items()):
        concepts[doc_i].append((start, end, label, score))
    return concepts


def relations_by_doc(hits: Dict[tuple, float], n_docs: int) -> List[List[Found]]:
    relations: List[List[Found]] = [[] for _ in range(n_docs)]
    for (doc_i, start, end, label, trigger), score in sorted(hits.items()):
        relations[doc_i].append((trigger, label, (start, end), score))
    return relations


def annotations(
    doc: Doc, concepts: List[Concept], relations: List[Found], schema: TaskSchema
) -> Tuple[List[Span], List[float], List[Relation]]:
    """The concept spans (relation arguments included), their scores, and the relations."""
    types_at: Dict[Tuple[int, int], List[Tuple[float, str]]] = defaultdict(list)
    for s, e, label, score in concepts:
        types_at[(s, e)].append((score, label))
    spans = [Span(doc, s, e, label=label) for s, e, label, _ in concepts]
    scores = [c[3] for c in concepts]
    found = []
    for (h_start, h_end, h_label), label, (t_start, t_end), score in relations:
        allowed = schema.tail_types(h_label, label)
        predicted = [l for _, l in sorted(types_at[(t_start, t_end)], reverse=True) if l in allowed]
        tail = Span(doc, t_start, t_end, label=predicted[0] if predicted else allowed[0])
        if not predicted:  # the argument becomes a concept, scored by its relation
            types_at[(t_start, t_end)].append((score, tail.label_))
            spans.append(tail)
            scores.append(score)
        found.append(Relation(Span(doc, h_start, h_end, label=h_label), tail, label, score))
    return spans, scores, found
