"""Document status classes (``doc.cats``) from brat events: smoking and alcohol status from SHAC.

The SHAC scheme (n2c2 2022 SDoH; the ``sdoh-mtsamples`` corpus) annotates a
substance mention as an event (``E1\\tTobacco:T1 Status:T2 ...``) whose
``Status`` argument is a ``StatusTime`` span carrying the attribute
``StatusTimeVal`` = ``current``, ``past``, ``future``, ``none`` or
``unknown``. :func:`status_label` turns a document's events of one type into
one of :data:`STATUS_LABELS` by this rule (the only place it is written):

1. No event of the type in the document: ``unknown``.
2. Otherwise every ``StatusTimeVal`` on the ``Status`` argument(s) of every
   such event is collected, and the first that occurs of
   ``current`` -> ``current``, ``past`` -> ``past``, ``none`` -> ``never``
   decides: current beats past beats never ("smokes 1 ppd, smoked for
   30 years" is current; "denies smoking now, quit in 1990" is past).
3. Events whose statuses are only ``future`` or ``unknown``, or that have no
   ``Status`` argument, or whose argument has no value, give ``unknown``.

SHAC's ``none`` means "does not use" (denies, nonsmoker): the class is
``never``, although a note saying "no tobacco" does not prove that the patient
never smoked. Order in the text is not used: "smokes ..., recently stopped
for the past two weeks" (a current and a past event) is ``current``.

The classes are exclusive, so one task is one corpus: ``doc.cats`` holds one
1.0 and three 0.0 over :data:`STATUS_LABELS` (spaCy's ``textcat``,
``exclusive_classes = true``). The events are read from the brat lines that
:func:`~spacy_softprompt.corpora.brat.read_brat` keeps with each Doc
(:mod:`.brat_store`), by the event type and attribute name as written in the
``.ann`` (before any ``--label-map``).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc

from .brat_store import Mention, get_records, mention_of
from .summary import ConversionSummary, CorpusFormatError

CURRENT = "current"
PAST = "past"
NEVER = "never"
UNKNOWN = "unknown"
#: the classes of a status task, in doc.cats order
STATUS_LABELS: Tuple[str, ...] = (CURRENT, PAST, NEVER, UNKNOWN)
#: StatusTimeVal values that decide the class, in precedence order
PRECEDENCE: Tuple[Tuple[str, str], ...] = (("current", CURRENT), ("past", PAST), ("none", NEVER))
#: every StatusTimeVal value of the SHAC annotation.conf (future and unknown decide nothing)
STATUS_VALUES: Tuple[str, ...] = ("current", "past", "future", "none", "unknown")
STATUS_ATTRIBUTE = "StatusTimeVal"
STATUS_ROLE = "Status"
#: the status tasks of the SDoH corpus: task name -> event type
SDOH_TASKS: Dict[str, str] = {"smoking": "Tobacco", "alcohol": "Alcohol"}


@dataclass(frozen=True)
class Decision:
    """A document's class and the branch of the rule that gave it."""

    label: str
    reason: str
    mixed: bool = False  # events with more than one deciding value: precedence chose


def status_label(events: Sequence[Iterable[str]], event_type: str = "event") -> Decision:
    """The class of a document whose events of one type have these StatusTimeVal values
    (one collection per event, empty when the event has no status)."""
    if not events:
        return Decision(UNKNOWN, f"unknown: no {event_type} event")
    values = {value for event in events for value in event}
    deciding = [value for value, _ in PRECEDENCE if value in values]
    if not deciding:
        return Decision(UNKNOWN, f"unknown: {event_type} events without a current, past or none status")
    label = dict(PRECEDENCE)[deciding[0]]
    return Decision(label, f"{label}: an event is {deciding[0]}" + (
        f" (also {', '.join(deciding[1:])}: {deciding[0]} takes precedence)" if deciding[1:] else ""),
        mixed=len(deciding) > 1)


def event_statuses(doc: Doc, event_type: str) -> Tuple[List[List[str]], List[Tuple[Mention, str]]]:
    """The StatusTimeVal values of each ``event_type`` event of ``doc`` (from its brat lines), and
    the (argument, value) pairs whose value is not one of :data:`STATUS_VALUES`."""
    records = get_records(doc)
    values: Dict[Mention, List[str]] = defaultdict(list)
    for record in records:
        if record.kind == "A" and record.type == STATUS_ATTRIBUTE and record.value is not None:
            values[mention_of(record.refs[0])].append(record.value)
    events: List[List[str]] = []
    unexpected: List[Tuple[Mention, str]] = []
    for record in records:
        if record.kind != "E" or record.type != event_type:
            continue
        event: List[str] = []
        for role, ref in zip(record.roles, record.refs[1:]):
            if re.sub(r"\d+$", "", role) == STATUS_ROLE:
                for value in values.get(mention_of(ref), []):
                    if value in STATUS_VALUES:
                        event.append(value)
                    else:
                        unexpected.append((mention_of(ref), value))
        events.append(event)
    return events, unexpected


def status_cats(label: str) -> Dict[str, float]:
    """One-hot ``doc.cats`` over :data:`STATUS_LABELS`."""
    if label not in STATUS_LABELS:
        raise ValueError(f"{label!r} is not a status class ({', '.join(STATUS_LABELS)})")
    return {name: float(name == label) for name in STATUS_LABELS}


def add_status_cats(docs: Sequence[Doc], event_type: str, summary: ConversionSummary, root: Path) -> None:
    """Write each Doc's status class (from its ``event_type`` events) to ``doc.cats`` and count
    classes and reasons in ``summary``. ``root``: the folder ``doc._.doc_id`` is relative to,
    for errors. A StatusTimeVal outside :data:`STATUS_VALUES` is malformed input (file:line);
    an event type that no document has is an error (a misspelled type would make every
    document unknown)."""
    if docs and not any(r.kind == "E" and r.type == event_type for doc in docs for r in get_records(doc)):
        found = sorted({r.type for doc in docs for r in get_records(doc) if r.kind == "E"})
        raise ValueError(f"no {event_type} event in any document of {summary.source or root} "
                         f"(event types found: {', '.join(found) or 'none'})")
    for label in STATUS_LABELS:  # every class in the summary, in this order, 0 included
        summary.cats[label] += 0
    for doc in docs:
        events, unexpected = event_statuses(doc, event_type)
        for mention, value in unexpected:
            ann = root / f"{doc._.doc_id}.ann"
            summary.report(CorpusFormatError(ann, _attribute_line(ann, value), (
                f"unexpected {STATUS_ATTRIBUTE} value {value!r} on the {STATUS_ROLE} argument of a {event_type} "
                f"event at characters {mention[0]}-{mention[1]} (expected one of {', '.join(STATUS_VALUES)})")))
        decision = status_label(events, event_type)
        doc.cats = status_cats(decision.label)
        summary.cats[decision.label] += 1
        summary.cats_reasons[decision.reason] += 1


def _attribute_line(ann: Path, value: str) -> Optional[int]:
    """The number of the first ``A`` line of ``ann`` that gives ``value`` to StatusTimeVal."""
    try:
        lines = ann.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    for number, line in enumerate(lines, start=1):
        ann_id, _, body = line.rstrip("\r").partition("\t")
        words = body.split()
        if ann_id[:1] in ("A", "M") and words[:1] == [STATUS_ATTRIBUTE] and words[-1] == value:
            return number
    return None
