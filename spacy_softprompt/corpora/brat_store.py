"""The brat lines behind a Doc's relations and attributes, kept for a faithful export.

``doc._.relations`` holds span-level relations: an event's arguments, an ``R``
line and a ``*`` equivalence all become ``Relation`` objects, and two
annotations on one covering span are one span. That is what training needs,
but it cannot say which brat line a relation came from. The reader therefore
also stores one :class:`Record` per ``E``, ``R``, ``*`` and ``A`` line, whose
arguments are *references* to annotations: ``(start, end, label, variant)``
for a text-bound annotation (``variant`` indexes ``span._.fragments``) and
``(start, end, label, variant, index)`` for the ``index``-th event on that
trigger. ``write_brat`` writes these records back when they still describe the
Doc (the same relations and attributes), and the Doc's relations otherwise.

Storage follows :mod:`spacy_softprompt.relations`: ``doc.user_data`` under
``("._.", BRAT_KEY, start, end)`` of the record's first argument, offsets
relative to that start, so records survive ``DocBin``, ``to_bytes`` and
``Doc.from_docs``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Set, Tuple, Union

from spacy.tokens import Doc, Span

BRAT_KEY = "softprompt_brat"

Mention = Tuple[int, int, str, int]  # start, end, label, variant
EventRef = Tuple[int, int, str, int, int]  # the trigger's mention, then the event's index on it
Ref = Union[Mention, EventRef]
RelationKey = Tuple[int, int, str, int, int, str, str]


@dataclass
class Record:
    """One ``E``, ``R``, ``*`` or ``A`` line, with references instead of ids.

    ``kind``: ``"E"``, ``"R"``, ``"*"`` or ``"A"``; ``type``: the event type,
    relation type, equivalence type or attribute name as written. ``refs``: E:
    trigger then arguments; R: Arg1, Arg2; ``*``: members; A: target.
    ``roles``: E: each argument's role as written; R: the argument names.
    ``labels``: the relation label each argument (E), the line (R) or each
    consecutive pair (``*``) became in ``doc._.relations``. ``value``: an
    attribute's value (None when binary). ``swapped``: R read with Arg2 as head.
    """

    kind: str
    type: str
    refs: List[Ref]
    roles: List[str] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    value: Optional[str] = None
    swapped: bool = False

    def relations(self) -> Iterator[Tuple[Ref, Ref, str]]:
        """The (head, tail, label) relations this line became, in reference form."""
        if self.kind == "E":
            for ref, label in zip(self.refs[1:], self.labels):
                yield self.refs[0], ref, label
        elif self.kind == "R":
            head, tail = (self.refs[1], self.refs[0]) if self.swapped else (self.refs[0], self.refs[1])
            yield head, tail, self.labels[0]
        elif self.kind == "*":
            for head, tail in zip(self.refs, self.refs[1:]):
                yield head, tail, self.labels[0]


def span_of(ref: Ref) -> Tuple[int, int, str]:
    """The covering span (start, end, label) a reference points at (an event: its trigger's)."""
    return ref[0], ref[1], ref[2]


def mention_of(ref: Ref) -> Mention:
    return ref[0], ref[1], ref[2], ref[3]


def relation_key(head: Ref, tail: Ref, label: str) -> RelationKey:
    """The key ``Relation.key()`` gives the span-level relation of these references."""
    return (*span_of(head), *span_of(tail), label)


def _encode(ref: Ref, anchor: int) -> list:
    return [ref[0] - anchor, ref[1] - anchor, *ref[2:]]


def _decode(ref: list, anchor: int) -> Ref:
    return (ref[0] + anchor, ref[1] + anchor, *ref[2:])  # type: ignore[return-value]


def add_records(doc: Doc, records: List[Record]) -> None:
    """Append ``records`` to those stored on ``doc`` (each under its first reference)."""
    for record in records:
        anchor_start, anchor_end = record.refs[0][0], record.refs[0][1]
        key = ("._.", BRAT_KEY, anchor_start, anchor_end)
        doc.user_data.setdefault(key, []).append(
            [
                record.kind,
                record.type,
                [_encode(ref, anchor_start) for ref in record.refs],
                list(record.roles),
                list(record.labels),
                record.value,
                record.swapped,
            ]
        )


def get_records(doc: Doc) -> List[Record]:
    """The stored records, by anchor offsets, then in the order they were added."""
    found = [(k, v) for k, v in doc.user_data.items() if _is_key(k)]
    records: List[Record] = []
    for key, values in sorted(found, key=lambda kv: (kv[0][2], kv[0][3])):
        for kind, type_, refs, roles, labels, value, swapped in values:
            records.append(
                Record(kind, type_, [_decode(r, key[2]) for r in refs], list(roles), list(labels), value, swapped)
            )
    return records


def has_records(doc: Doc) -> bool:
    return any(_is_key(k) for k in doc.user_data)


def _is_key(key: object) -> bool:
    return isinstance(key, tuple) and len(key) == 4 and key[0] == "._." and key[1] == BRAT_KEY


def records_describe(doc: Doc, records: List[Record], spans: List[Span]) -> bool:
    """Whether the records still give exactly the Doc's relations and span attributes."""
    present: Set[Tuple[int, int, str]] = {(s.start_char, s.end_char, s.label_) for s in spans}
    if any(span_of(ref) not in present for record in records for ref in record.refs):
        return False
    derived = {relation_key(h, t, label) for record in records for h, t, label in record.relations()}
    if derived != {relation.key() for relation in doc._.relations}:
        return False
    attributes: Dict[Tuple[int, int, str], Dict[str, str]] = {}
    for record in records:
        if record.kind == "A":
            value = record.value if record.value is not None else "true"
            attributes.setdefault(span_of(record.refs[0]), {}).setdefault(record.type, value)
    return all(
        s._.attributes == attributes.get((s.start_char, s.end_char, s.label_), {}) for s in spans
    )
