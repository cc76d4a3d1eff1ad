"""Where a concept really is in the source: the fragments behind a covering span.

A brat text-bound annotation can be discontinuous (``T5\\tCondition 331 356;368 376``)
or sit on offsets that are not token boundaries. spaCy spans are contiguous and
token-aligned, so each concept has two representations:

- the **covering span** (first start to last end, whitespace trimmed, expanded
  to token boundaries) in ``doc.spans[spans_key]``. This is what the model
  trains on and predicts, and what ``evaluate`` scores: *training policy* — for a
  discontinuous gold annotation the model learns its covering span, so the
  words between the fragments are inside the answer;
- its **fragments**: one list of ``(start_char, end_char)`` per source
  annotation, read through ``span._.fragments``. Several annotations can share
  one covering span and label (``Hepatitis B and C`` covers both
  ``Hepatitis ... C`` and ``Hepatitis B``): each keeps its own fragment list (a
  *variant*), so they never merge. ``export-brat`` writes the fragments back
  as ``start end;start end``; ``score-brat`` reads them from the files, as the
  official n2c2 2018 script does.

Storage follows :mod:`spacy_softprompt.relations`: ``doc.user_data`` under the
span-extension key ``("._.", FRAGMENTS_KEY, start_char, end_char)``, the value
``{label: [[[start, end], ...], ...]}`` with offsets *relative to the span's
start*, so it survives ``DocBin``, ``doc.to_bytes()`` and ``Doc.from_docs``
(which shifts the key). A span with nothing stored has one variant, itself.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span

FRAGMENTS_KEY = "softprompt_fragments"

Fragments = List[Tuple[int, int]]


def _key(start: int, end: int) -> tuple:
    return ("._.", FRAGMENTS_KEY, start, end)


def stored_variants(doc: Doc, start: int, end: int, label: str) -> Optional[List[Fragments]]:
    """The fragment lists stored for the span ``start:end`` with ``label`` (absolute offsets), or None."""
    stored = doc.user_data.get(_key(start, end), {}).get(label)
    if not stored:
        return None
    return [[(start + s, start + e) for s, e in variant] for variant in stored]


def get_variants(doc: Doc, start: int, end: int, label: str) -> List[Fragments]:
    """Every fragment list of the span ``start:end`` with ``label``; by default, the span itself."""
    return stored_variants(doc, start, end, label) or [[(start, end)]]


def get_fragments(span: Span) -> List[Fragments]:
    """``span._.fragments``: one list of ``(start_char, end_char)`` per source annotation."""
    return get_variants(span.doc, span.start_char, span.end_char, span.label_)


def set_fragments(span: Span, variants: Sequence[Sequence[Tuple[int, int]]], keep_default: bool = False) -> None:
    """Store the fragment lists of every annotation on ``span`` (its label), in variant order.

    One variant equal to the span itself is the default and stores nothing, unless
    ``keep_default`` (the source said so explicitly: a writer then keeps it as it is).
    """
    start, end = span.start_char, span.end_char
    key = _key(start, end)
    by_label: Dict[str, list] = dict(span.doc.user_data.get(key, {}))
    relative = [[[s - start, e - start] for s, e in variant] for variant in variants]
    if not relative or (relative == [[[0, end - start]]] and not keep_default):
        by_label.pop(span.label_, None)
    else:
        by_label[span.label_] = relative
    if by_label:
        span.doc.user_data[key] = by_label
    else:
        span.doc.user_data.pop(key, None)


def register_fragments_extension() -> None:
    """Idempotently register ``span._.fragments``."""
    if not Span.has_extension("fragments"):
        Span.set_extension("fragments", getter=get_fragments)


register_fragments_extension()
