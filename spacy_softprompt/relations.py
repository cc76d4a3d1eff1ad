"""Concepts and relations on the Doc.

Relations live in ``doc._.relations`` as :class:`Relation` objects, but they
are *stored* in ``doc.user_data`` as plain, msgpack-friendly values keyed by
the head span's character offsets, using spaCy's span-extension key format
``("._.", name, start_char, end_char)``. That choice is what makes them
survive every way spaCy moves a Doc around:

- ``DocBin(store_user_data=True)`` and ``doc.to_bytes()`` serialise
  ``user_data`` as it is;
- ``Doc.from_docs`` shifts the character offsets in span-extension keys by the
  position of each doc in the concatenation. The tail is stored *relative to
  the head's start*, so it moves with it.

Each stored relation also carries the exact text of both arguments, so a
relation can never silently point at other tokens: reading it back checks the
text and raises :class:`RelationAlignmentError` if it differs.

Brat attributes (e.g. SDoH ``StatusTimeVal``) are stored the same way, per
span offsets and label, and read through ``span._.attributes``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span, SpanGroup

RELATIONS_KEY = "softprompt_relation"
ATTRIBUTES_KEY = "softprompt_attributes"
DEFAULT_SPANS_KEY = "softprompt"


class RelationAlignmentError(ValueError):
    """A stored relation no longer matches the text it was attached to."""


@dataclass(frozen=True)
class Relation:
    """A directed, labelled link between two concept spans.

    ``head`` is the trigger (Arg1 in brat); ``tail`` is the argument (Arg2).
    Both are labelled spans: their ``label_`` is the concept type.
    """

    head: Span
    tail: Span
    label: str
    score: float = 1.0

    def key(self) -> Tuple[int, int, str, int, int, str, str]:
        """Offsets and labels only: what identity means for scoring and dedup."""
        h, t = self.head, self.tail
        return (h.start_char, h.end_char, h.label_, t.start_char, t.end_char, t.label_, self.label)

    def __repr__(self) -> str:
        return (
            f"Relation({self.label!r}, head={self.head.text!r}/{self.head.label_}, "
            f"tail={self.tail.text!r}/{self.tail.label_}, score={self.score:.3f})"
        )


def _span_at(doc: Doc, doc_text: str, start: int, end: int, label: str, text: str, what: str) -> Span:
    if doc_text[start:end] != text:
        raise RelationAlignmentError(
            f"Stored relation {what} {text!r} at characters {start}-{end} does not match the "
            f"document text there ({doc_text[start:end]!r}); the relation data does not belong "
            "to this text."
        )
    span = doc.char_span(start, end, label=label)
    if span is None:
        raise RelationAlignmentError(
            f"Stored relation {what} {text!r} at characters {start}-{end} no longer aligns with "
            "token boundaries (was the document retokenized?)."
        )
    return span


def get_relations(doc: Doc) -> Tuple[Relation, ...]:
    """Read the relations stored on ``doc``, in a stable order (by head, then tail)."""
    relations: List[Relation] = []
    doc_text = doc.text  # built anew on every access: read it once
    for key, values in sorted(
        ((k, v) for k, v in doc.user_data.items() if _is_key(k, RELATIONS_KEY)),
        key=lambda kv: (kv[0][2], kv[0][3]),
    ):
        h_start, h_end = key[2], key[3]
        for h_label, h_text, t_rel_start, t_rel_end, t_label, t_text, label, score in values:
            head = _span_at(doc, doc_text, h_start, h_end, h_label, h_text, "head")
            tail = _span_at(doc, doc_text, h_start + t_rel_start, h_start + t_rel_end, t_label, t_text, "tail")
            relations.append(Relation(head, tail, label, float(score)))
    return tuple(relations)


def set_relations(doc: Doc, relations: Iterable[Relation]) -> None:
    """Replace the relations stored on ``doc`` (duplicates by offsets/labels are merged, max score)."""
    for key in [k for k in doc.user_data if _is_key(k, RELATIONS_KEY)]:
        del doc.user_data[key]
    best: Dict[tuple, Relation] = {}
    for rel in relations:
        if rel.head.doc is not doc or rel.tail.doc is not doc:
            raise ValueError(f"{rel!r} has spans from another Doc; create them on this Doc.")
        if not rel.head.label_ or not rel.tail.label_:
            raise ValueError(f"{rel!r}: head and tail must be labelled spans (their concept type).")
        k = rel.key()
        if k not in best or rel.score > best[k].score:
            best[k] = rel
    for rel in best.values():
        h, t = rel.head, rel.tail
        key = ("._.", RELATIONS_KEY, h.start_char, h.end_char)
        doc.user_data.setdefault(key, []).append(
            (
                h.label_,
                h.text,
                t.start_char - h.start_char,
                t.end_char - h.start_char,
                t.label_,
                t.text,
                rel.label,
                float(rel.score),
            )
        )


def _is_key(key: Any, name: str) -> bool:
    return isinstance(key, tuple) and len(key) == 4 and key[0] == "._." and key[1] == name


def get_span_attributes(span: Span) -> Dict[str, str]:
    """Attributes (e.g. brat ``A`` lines) of this span *for its label*."""
    by_label = span.doc.user_data.get(("._.", ATTRIBUTES_KEY, span.start_char, span.end_char), {})
    return dict(by_label.get(span.label_, {}))


def set_span_attributes(span: Span, attributes: Dict[str, str]) -> None:
    key = ("._.", ATTRIBUTES_KEY, span.start_char, span.end_char)
    by_label = dict(span.doc.user_data.get(key, {}))
    by_label[span.label_] = dict(attributes)
    span.doc.user_data[key] = by_label


def register_extensions() -> None:
    """Idempotently register ``doc._.relations``, ``doc._.doc_id`` and ``span._.attributes``."""
    if not Doc.has_extension("doc_id"):
        Doc.set_extension("doc_id", default=None)
    if not Doc.has_extension("relations"):
        Doc.set_extension("relations", getter=get_relations, setter=set_relations)
    if not Span.has_extension("attributes"):
        Span.set_extension("attributes", getter=get_span_attributes)


def select_entities(spans: Sequence[Span], scores: Optional[Sequence[float]] = None) -> List[Span]:
    """Greedy non-overlapping selection for ``doc.ents``: best score first, then longest."""
    if scores is None:
        scores = [1.0] * len(spans)
    order = sorted(range(len(spans)), key=lambda i: (-scores[i], -len(spans[i]), spans[i].start))
    taken: set = set()
    chosen: List[Span] = []
    for i in order:
        span = spans[i]
        if len(span) == 0 or any(t in taken for t in range(span.start, span.end)):
            continue
        taken.update(range(span.start, span.end))
        chosen.append(span)
    return sorted(chosen, key=lambda s: (s.start, s.end))


def set_concepts(
    doc: Doc,
    spans: Sequence[Span],
    scores: Optional[Sequence[float]] = None,
    spans_key: str = DEFAULT_SPANS_KEY,
    set_ents: bool = True,
) -> None:
    """Write all concepts (overlaps allowed, one label per entry) to ``doc.spans[spans_key]``
    with their scores in ``.attrs["scores"]``, and a non-overlapping selection to ``doc.ents``."""
    if scores is None:
        scores = [1.0] * len(spans)
    order = sorted(range(len(spans)), key=lambda i: (spans[i].start, spans[i].end, spans[i].label_))
    group = SpanGroup(doc, name=spans_key, spans=[spans[i] for i in order])
    group.attrs["scores"] = [float(scores[i]) for i in order]
    doc.spans[spans_key] = group
    if set_ents:
        doc.ents = select_entities(list(group), group.attrs["scores"])


def concept_spans(doc: Doc, spans_key: str = DEFAULT_SPANS_KEY) -> Sequence[Span]:
    """A doc's concepts: the span group ``spans_key`` if the doc has one, else ``doc.ents``."""
    return doc.spans[spans_key] if spans_key in doc.spans else doc.ents


def concept_scores(doc: Doc, spans_key: str = DEFAULT_SPANS_KEY) -> List[float]:
    group = doc.spans[spans_key] if spans_key in doc.spans else []
    scores = getattr(group, "attrs", {}).get("scores")
    return [float(s) for s in scores] if scores is not None else [1.0] * len(group)
