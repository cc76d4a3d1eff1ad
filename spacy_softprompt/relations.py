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

- ``Span.as_doc(copy_user_data=True)`` shifts them by the slice's start:
  relations inside the slice read back, those reaching outside it are not part
  of the slice's text and are left out.

Each stored relation also carries the exact text of both arguments, so a
relation can never silently point at other tokens. Reading back is per
relation, so one bad relation never costs the others:

- an argument whose text matches but that no longer falls on token boundaries
  (the Doc was retokenized, e.g. by ``merge_entities``) is re-aligned to the
  tokens covering it, with one :class:`RelationAlignmentWarning` counting them;
- a relation whose stored text differs from the document (the data belongs to
  another text) is dropped, with a warning naming it.

``get_relations(doc, strict=True)`` raises :class:`RelationAlignmentError`
instead of either.

Concept scores are kept twice: in ``doc.spans[key].attrs["scores"]`` (spaCy's
place for them) and per span in ``user_data`` (the same key format), because
``Doc.from_docs`` builds new span groups without their ``attrs``;
:func:`concept_scores` reads the second when the first is gone and
:func:`concatenate` is ``Doc.from_docs`` that puts them back.

Brat attributes (e.g. SDoH ``StatusTimeVal``) are stored the same way, per
span offsets and label, and read through ``span._.attributes``.

A component's relations carry its ``spans_key`` as their source, so two
components on one Doc each replace only their own (:func:`set_relations`), as
each replaces only its own span group and the entities it set.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span, SpanGroup

RELATIONS_KEY = "softprompt_relation"
ATTRIBUTES_KEY = "softprompt_attributes"
SCORES_KEY = "softprompt_score"
DEFAULT_SPANS_KEY = "softprompt"
CORPUS_ATTR = "corpus"  # doc._.corpus: which corpus (and so which label set) a Doc comes from
# medspaCy ConText's span flags (registered by medspaCy, not here): output writes the true ones
CONTEXT_FLAGS = ("is_negated", "is_uncertain", "is_historical", "is_hypothetical", "is_family")


class RelationAlignmentError(ValueError):
    """A stored relation no longer matches the text it was attached to."""


class RelationAlignmentWarning(UserWarning):
    """Stored relations were re-aligned to new tokens, or dropped because their text differs."""


@dataclass(frozen=True)
class Relation:
    """A directed, labelled link between two concept spans.

    ``head`` is the trigger (Arg1 in brat); ``tail`` is the argument (Arg2).
    Both are labelled spans: their ``label_`` is the concept type. ``source``: the
    ``spans_key`` of the component or converter that set it (a component replaces its own
    relations and keeps the others); None: set by hand. It does not take part in equality.
    """

    head: Span
    tail: Span
    label: str
    score: float = 1.0
    source: Optional[str] = field(default=None, compare=False)

    def key(self) -> Tuple[int, int, str, int, int, str, str]:
        """Offsets and labels only: what identity means for scoring and dedup."""
        h, t = self.head, self.tail
        return (h.start_char, h.end_char, h.label_, t.start_char, t.end_char, t.label_, self.label)

    def __repr__(self) -> str:
        score = f"{self.score:.3f}" if isinstance(self.score, (int, float)) else repr(self.score)
        return (
            f"Relation({self.label!r}, head={self.head.text!r}/{self.head.label_}, "
            f"tail={self.tail.text!r}/{self.tail.label_}, score={score})"
        )


def _span_at(doc: Doc, doc_text: str, start: int, end: int, label: str, text: str, what: str,
             strict: bool) -> Tuple[Span, bool]:
    """The argument's span, and whether it had to be widened to the tokens covering it."""
    if doc_text[start:end] != text:
        raise RelationAlignmentError(
            f"Stored relation {what} {text!r} at characters {start}-{end} does not match the "
            f"document text there ({doc_text[start:end]!r}); the relation data does not belong "
            "to this text."
        )
    span = doc.char_span(start, end, label=label)
    if span is not None:
        return span, False
    if strict:
        raise RelationAlignmentError(
            f"Stored relation {what} {text!r} at characters {start}-{end} no longer aligns with "
            "token boundaries (was the document retokenized?)."
        )
    covering = doc.char_span(start, end, label=label, alignment_mode="expand")
    if covering is None:
        raise RelationAlignmentError(f"Stored relation {what} {text!r} at characters {start}-{end} covers no token.")
    return covering, True


def get_relations(doc: Doc, strict: bool = False, source: Optional[str] = None) -> Tuple[Relation, ...]:
    """Read the relations stored on ``doc``, by head (a head's in the order they were set);
    ``source``: only those a component with that spans_key set, and those set with no source.

    Relations reaching outside the text (the rest of a sliced Doc) are left out, with no warning
    (a slice keeps what is inside it); see the module docstring for those that no longer align
    (re-aligned or dropped, with a warning)."""
    best: Dict[tuple, Relation] = {}
    realigned: List[str] = []
    dropped: List[str] = []
    doc_text = doc.text  # built anew on every access: read it once
    for key, values in sorted(
        ((k, v) for k, v in doc.user_data.items() if _is_key(k, RELATIONS_KEY)),
        key=lambda kv: (kv[0][2], kv[0][3]),
    ):
        h_start, h_end = key[2], key[3]
        for stored in values:
            if source is not None and _source(stored) not in (None, source):
                continue
            h_label, h_text, t_rel_start, t_rel_end, t_label, t_text, label, score = stored[:8]
            t_start, t_end = h_start + t_rel_start, h_start + t_rel_end
            if min(h_start, t_start) < 0 or max(h_end, t_end) > len(doc_text):
                continue  # not in this text: the Doc is a slice of the one the relation was set on
            try:
                head, moved_head = _span_at(doc, doc_text, h_start, h_end, h_label, h_text, "head", strict)
                tail, moved_tail = _span_at(doc, doc_text, t_start, t_end, t_label, t_text, "tail", strict)
            except RelationAlignmentError:
                if strict:
                    raise
                dropped.append(f"{h_text!r} --{label}--> {t_text!r} at {h_start}-{h_end}/{t_start}-{t_end}")
                continue
            if moved_head or moved_tail:
                realigned.append(f"{h_text!r} --{label}--> {t_text!r} (now {head.text!r} --> {tail.text!r})")
            relation = Relation(head, tail, label, float(score), _source(stored))
            known = best.get(relation.key())
            if known is None or relation.score > known.score:
                best[relation.key()] = relation
    if realigned:
        warnings.warn(
            f"{len(realigned)} relation(s) no longer fall on token boundaries (was the document "
            f"retokenized?) and were re-aligned to the tokens covering them: {'; '.join(realigned)}",
            RelationAlignmentWarning,
            stacklevel=3,  # the getter of doc._.relations sits between
        )
    if dropped:
        warnings.warn(
            f"{len(dropped)} stored relation(s) do not match the document text and were dropped "
            f"(their data belongs to another text): {'; '.join(dropped)}",
            RelationAlignmentWarning,
            stacklevel=3,  # the getter of doc._.relations sits between
        )
    return tuple(best.values())


def set_relations(doc: Doc, relations: Iterable[Relation], source: Optional[str] = None) -> None:
    """Replace the relations stored on ``doc`` (duplicates by offsets/labels are merged, max score).

    ``source`` (a component's or converter's ``spans_key``): replace only the relations set with
    that source and keep the others, so two components on one Doc each replace their own; None
    (``doc._.relations = ...``): replace them all, each relation keeping its own ``source`` (so
    relations read, filtered and assigned back stay their component's). The relations are checked
    before anything is replaced: a bad one leaves the Doc as it was."""
    best: Dict[tuple, Relation] = {}
    for rel in relations:
        if not isinstance(rel, Relation):
            raise TypeError(f"{rel!r} is not a spacy_softprompt.Relation(head, tail, label, score).")
        if rel.head.doc is not doc or rel.tail.doc is not doc:
            raise ValueError(f"{rel!r} has spans from another Doc; create them on this Doc.")
        if not rel.head.label_ or not rel.tail.label_:
            raise ValueError(f"{rel!r}: head and tail must be labelled spans (their concept type).")
        if not isinstance(rel.score, (int, float)) or isinstance(rel.score, bool):
            raise TypeError(f"Relation {rel.label!r} ({rel.head.text!r} -> {rel.tail.text!r}): score "
                            f"{rel.score!r} is not a number.")
        k = rel.key()
        if k not in best or rel.score > best[k].score:
            best[k] = rel
    for key in [k for k in doc.user_data if _is_key(k, RELATIONS_KEY)]:
        others = [v for v in doc.user_data[key] if source is not None and _source(v) != source]
        if others:
            doc.user_data[key] = others
        else:
            del doc.user_data[key]
    for rel in best.values():
        kept_source = source if source is not None else rel.source
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
            ) + ((kept_source,) if kept_source is not None else ())
        )


def _source(stored: Sequence[Any]) -> Optional[str]:
    """Who set a stored relation: a component's spans_key (a ninth field), or None."""
    return stored[8] if len(stored) > 8 else None


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
    """Idempotently register ``doc._.relations``, ``doc._.doc_id``, ``doc._.corpus`` and
    ``span._.attributes``."""
    if not Doc.has_extension("doc_id"):
        Doc.set_extension("doc_id", default=None)
    if not Doc.has_extension(CORPUS_ATTR):
        Doc.set_extension(CORPUS_ATTR, default=None)
    if not Doc.has_extension("relations"):
        Doc.set_extension("relations", getter=get_relations, setter=set_relations)
    if not Span.has_extension("attributes"):
        Span.set_extension("attributes", getter=get_span_attributes)


def corpus_of(doc: Doc) -> Optional[str]:
    """The corpus a Doc comes from (``doc._.corpus``, set by ``convert --corpus``), or None.

    It is a Doc extension, so it lives in ``doc.user_data`` and travels with ``DocBin``
    (``store_user_data=True``) and ``doc.to_bytes()``, as relations do. A multi-corpus
    component supervises a Doc only on the types its corpus annotates (see schema.py)."""
    return doc._.get(CORPUS_ATTR) if doc.has_extension(CORPUS_ATTR) else None


def select_entities(spans: Sequence[Span], scores: Optional[Sequence[float]] = None,
                    taken: Iterable[int] = ()) -> List[Span]:
    """Greedy non-overlapping selection for ``doc.ents``: best score first, then longest; none
    on the token indices ``taken``."""
    if scores is None:
        scores = [1.0] * len(spans)
    order = sorted(range(len(spans)), key=lambda i: (-scores[i], -len(spans[i]), spans[i].start))
    taken = set(taken)
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
    with their scores in ``.attrs["scores"]`` (and per span in user_data, which outlives
    ``Doc.from_docs``), and a non-overlapping selection to ``doc.ents``, around the entities
    something else set before (an entity ruler, medspaCy's target matcher), which stay; entities
    this span group set before are replaced."""
    if scores is None:
        scores = [1.0] * len(spans)
    replaced = {(s.start, s.end, s.label) for s in doc.spans[spans_key]} if spans_key in doc.spans else set()
    order = sorted(range(len(spans)), key=lambda i: (spans[i].start, spans[i].end, spans[i].label_))
    group = SpanGroup(doc, name=spans_key, spans=[spans[i] for i in order])
    group.attrs["scores"] = [float(scores[i]) for i in order]
    doc.spans[spans_key] = group
    _store_scores(doc, spans_key, group, group.attrs["scores"])
    if set_ents:
        kept = [e for e in doc.ents if (e.start, e.end, e.label) not in replaced]
        taken = [i for e in kept for i in range(e.start, e.end)]
        doc.ents = sorted(kept + select_entities(list(group), group.attrs["scores"], taken), key=lambda e: e.start)


def _store_scores(doc: Doc, spans_key: str, spans: Sequence[Span], scores: Sequence[float]) -> None:
    """Per span offsets: ``{spans_key: {label: score}}``; new dicts each time, as ``from_docs``
    and ``as_doc`` copy user_data values shallowly."""
    new: Dict[tuple, Dict[str, float]] = {}
    for span, score in zip(spans, scores):
        new.setdefault(("._.", SCORES_KEY, span.start_char, span.end_char), {})[span.label_] = float(score)
    for key in [k for k in doc.user_data if _is_key(k, SCORES_KEY)]:
        others = {group: by_label for group, by_label in doc.user_data[key].items() if group != spans_key}
        if others:
            doc.user_data[key] = others
        else:
            del doc.user_data[key]
    for key, by_label in new.items():
        doc.user_data[key] = {**doc.user_data.get(key, {}), spans_key: by_label}


def realign_concepts(doc: Doc, spans_key: str = DEFAULT_SPANS_KEY) -> None:
    """Rebuild ``doc.spans[spans_key]`` from its concepts' stored character offsets: spaCy does not
    update span groups when it retokenizes (after ``merge_entities`` the group's spans point at
    other tokens) and ``Span.as_doc`` leaves them out. Each concept is placed on the tokens covering
    its characters, with its score; concepts outside the text (a slice) are left out, and
    ``doc.ents`` is left as it is."""
    found: List[Tuple[Span, float]] = []
    for key, by_group in doc.user_data.items():
        if not _is_key(key, SCORES_KEY) or spans_key not in by_group or key[2] < 0 or key[3] > len(doc.text):
            continue
        for label, score in by_group[spans_key].items():
            span = doc.char_span(key[2], key[3], label=label, alignment_mode="expand")
            if span is not None:
                found.append((span, score))
    if spans_key in doc.spans:
        del doc.spans[spans_key]  # stale: reading its last spans may fail inside spaCy
    set_concepts(doc, [span for span, _ in found], [score for _, score in found], spans_key, set_ents=False)


def concept_spans(doc: Doc, spans_key: str = DEFAULT_SPANS_KEY) -> Sequence[Span]:
    """A doc's concepts: the span group ``spans_key`` if the doc has one, else ``doc.ents``."""
    return doc.spans[spans_key] if spans_key in doc.spans else doc.ents


def concept_relations(doc: Doc, spans_key: str = DEFAULT_SPANS_KEY) -> Tuple[Relation, ...]:
    """A doc's relations among :func:`concept_spans`: those the component (or converter) writing
    the span group ``spans_key`` set, and those set with no source, if the doc has that group;
    else every relation (its concepts are then ``doc.ents``)."""
    return get_relations(doc, source=spans_key if spans_key in doc.spans else None)


def concept_scores(doc: Doc, spans_key: str = DEFAULT_SPANS_KEY) -> List[float]:
    """The score of each span in ``doc.spans[spans_key]``: its ``attrs["scores"]``, else (after
    ``Doc.from_docs``) the per-span store; 1.0 for spans with neither (gold data)."""
    if spans_key not in doc.spans:
        return []
    group = doc.spans[spans_key]
    scores = group.attrs.get("scores")
    if scores is not None and len(scores) == len(group):
        return [float(s) for s in scores]
    stored = [doc.user_data.get(("._.", SCORES_KEY, s.start_char, s.end_char), {}) for s in group]
    return [float(by_key.get(spans_key, {}).get(s.label_, 1.0)) for s, by_key in zip(group, stored)]


def concatenate(docs: Sequence[Doc], **kwargs: Any) -> Doc:
    """``Doc.from_docs`` (same arguments) that keeps ``doc.spans[key].attrs["scores"]``, which
    spaCy's span groups lose there; relations and attributes survive it anyway."""
    joined = Doc.from_docs(list(docs), **kwargs)
    for key in joined.spans:
        if any(key in doc.spans and "scores" in doc.spans[key].attrs for doc in docs):
            joined.spans[key].attrs["scores"] = concept_scores(joined, key)
    return joined
