"""Training targets: the gold answers of each query, from the reference Docs.

Concept queries are answered by the gold concepts of their type; relation
queries are asked on gold triggers and answered by the tails of the gold
relations of that trigger. Gold spans are re-aligned to the predicted Doc's
tokens by characters (the two may be tokenized differently). Discontinuous
gold concepts are learned as their covering span (the span in the group).
Classification queries are answered by the reference Doc's ``cats``
(:func:`gold_cats`), once per Doc after pooling over its windows.

A reference Doc tagged with a corpus (``doc._.corpus``) is asked only the types
its corpus annotates (:meth:`~.schema.TaskSchema.asked`), so another corpus's
types are never its negatives; its classes are those its ``cats`` give.
"""
from __future__ import annotations

import numbers
import warnings

from collections import defaultdict
from typing import AbstractSet, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc, Span
from spacy.training import Example

from .pieces import DocPieces, tokenize_doc
from .queries import Query, QueryBuilder
from .relations import concept_relations, concept_spans, corpus_of
from .schema import TaskSchema


def training_queries(
    builder: QueryBuilder, examples: Sequence[Example], spans_key: str
) -> Tuple[List[Query], List[DocPieces]]:
    """Every concept, classification and gold-trigger relation query of ``examples``, with
    its gold answers (a classification query's are its Doc's, :func:`gold_cats`)."""
    queries: List[Query] = []
    pieces: List[DocPieces] = []
    triggers_of = builder.schema.triggers
    for i, eg in enumerate(examples):
        doc = eg.predicted
        p = tokenize_doc(doc, builder.tokenizer)
        pieces.append(p)
        gold = [s for s in (align(doc, s) for s in concept_spans(eg.reference, spans_key)) if s is not None]
        asked = supervised_labels(builder.schema, eg.reference)
        for q in builder.concept_queries(i, p, asked):
            builder.shuffle_parts(q)
            q.gold = gold_answers(builder, q, ((s.label_, s) for s in gold))
            queries.append(q)
        if eg.reference.cats:  # a Doc without gold classes has nothing to learn from them
            queries += builder.cat_queries(i, p)
        by_trigger: Dict[Tuple[int, int, str], List[Tuple[str, Span]]] = defaultdict(list)
        for rel in concept_relations(eg.reference, spans_key):
            head, tail = align(doc, rel.head), align(doc, rel.tail)
            if head is not None and tail is not None:
                by_trigger[(head.start, head.end, head.label_)].append((rel.label, tail))
        triggers = [s for s in gold if s.label_ in triggers_of]
        for q in builder.relation_queries(i, p, triggers, asked):
            for j, t in enumerate(q.triggers):
                q.gold += gold_answers(builder, q, by_trigger[(t.start, t.end, t.label_)], j)
            queries.append(q)
    return queries, pieces


def supervised_labels(schema: TaskSchema, reference: Doc) -> Optional[AbstractSet[str]]:
    """The labels a reference Doc is supervised on: its corpus's (None: all, untagged).
    A tag the task was not trained on is an error: its types would silently all be learned
    as negatives, or none."""
    corpus = corpus_of(reference)
    if corpus is not None and schema.corpora and corpus not in schema.corpora:
        raise ValueError(
            f"A training Doc comes from corpus {corpus!r} (doc._.corpus), which this component was not "
            f"initialized with ({sorted(schema.corpora)}): initialize on data that has it, or give its "
            "types with [initialize.components.<name>] corpus_labels or add_label(..., corpus=...)."
        )
    return schema.asked(corpus)


def gold_cats(labels: Sequence[str], docs: Sequence[Doc], exclusive: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(docs, classes) gold values of the reference ``doc.cats`` and which of them are
    given (a class missing from a reference Doc's cats is not supervised, as in spaCy's
    textcat). A value other than 0 or 1, and with ``exclusive`` classes a Doc giving several
    the value 1, are errors (spaCy's textcat refuses both): the loss could not mean them."""
    gold = np.zeros((len(docs), len(labels)), dtype=np.float32)
    known = np.zeros((len(docs), len(labels)), dtype=bool)
    for i, doc in enumerate(docs):
        cats = doc.cats
        for unknown in sorted(set(cats) - set(labels)) if labels else ():  # no classes: doc.cats is another's
            warnings.warn(f"doc.cats has the class {unknown!r}, which this component does not know: it is not "
                          "learned (add_class adds a class; a misspelt key is lost).", UserWarning, stacklevel=2)
        for j, label in enumerate(labels):
            if label in cats:
                value = cats[label]
                if not isinstance(value, (numbers.Real, np.bool_)) or value not in (0, 1):  # numpy's scalars too
                    raise ValueError(f"The Doc {doc.text[:40]!r}... has doc.cats[{label!r}] = {value!r}: "
                                     "a class's gold value is 0.0 or 1.0.")
                gold[i, j], known[i, j] = float(value), True
        if exclusive and gold[i].sum() > 1:
            named = [label for label, v in zip(labels, gold[i]) if v == 1.0]
            raise ValueError(f"The Doc {doc.text[:40]!r}... gives {', '.join(named)} the value 1.0, but "
                             "exclusive_classes = true takes one class per Doc; set exclusive_classes = false "
                             "for classes that may hold together.")
    return gold, known


def gold_answers(
    builder: QueryBuilder, query: Query, labelled: Iterable[Tuple[str, Span]], trigger_index: int = 0
) -> List[Tuple[int, int, int]]:
    """Gold spans this query asks about (for its ``trigger_index``-th trigger), as
    (start, end, output column)."""
    answers = []
    for label, span in labelled:
        column = builder.output_column(query, label, trigger_index)
        if column is not None:
            answers.append((span.start, span.end, column))
    return answers


def align(doc: Doc, span: Span) -> Optional[Span]:
    """The same characters as a span of ``doc`` (whose tokenization may differ)."""
    if span.doc is doc:
        return span
    return doc.char_span(span.start_char, span.end_char, label=span.label_, alignment_mode="expand")
