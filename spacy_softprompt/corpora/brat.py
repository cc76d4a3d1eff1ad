"""brat standoff (``.txt`` + ``.ann``) to spaCy Docs and back.

Reading turns text-bound annotations (``T``) into labelled spans in
``doc.spans[spans_key]`` (a non-overlapping selection also in ``doc.ents``),
binary relations (``R``), event arguments (``E``) and equivalences (``*``)
into :class:`~spacy_softprompt.relations.Relation` objects, and attributes
(``A``/``M``) into ``span._.attributes``. Every annotation either arrives or
is counted, with its reason, in the :class:`ConversionSummary`.

Policies (each one is counted in the summary when it applies):

- Offsets count every character of the ``.txt`` as stored (``\\r`` included);
  the file is read as UTF-8 without newline translation.
- A discontinuous span (``0 5;9 14``) becomes its covering span (first start
  to last end): a span in spaCy is contiguous.
- Surrounding whitespace is trimmed, then a span that does not sit on token
  boundaries is expanded to them. A span that is empty or whitespace only is
  not converted.
- Two annotations with the same span and label become one span (relations
  and attributes of both ids point at it); identical relations become one.
- The ``.ann`` text field is a copy of the ``.txt`` at the offsets, and the
  check that they agree catches offsets that do not belong to the text
  (shifted, CRLF/encoding changes, wrong file). ``text_check`` sets how
  strict the check is: ``"strict"`` (any difference is an error),
  ``"tolerant"`` (the default: a difference inside the span is accepted as an
  adjustment when both strings start and end with the same character,
  ignoring case, and are at least 80 % similar; this accepts the SDoH
  corpus's upstream search-and-replace ``State`` -> ``Status`` while an
  offset shift or a wrong end still fails), ``"offsets"`` (never compare).
  Trailing whitespace of the text field is never significant.
- Event arguments become relations from the trigger to the argument, labelled
  with the role; a numbered role (``Type2``) loses its number. An event
  without arguments keeps only its trigger entity. Relations whose arguments
  are event ids use the event's trigger.
- An equivalence ``*\\tOVERLAP E1 E2 E3`` becomes relations between
  consecutive members (``E1-E2``, ``E2-E3``) labelled with its type.
- Notes (``#``) and normalizations (``N``) are not converted.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab
from tqdm import tqdm

from ..relations import DEFAULT_SPANS_KEY, Relation, set_concepts, set_relations, set_span_attributes
from .summary import ConversionSummary, CorpusFormatError

TEXT_CHECKS = ("strict", "tolerant", "offsets")
TOLERANT_MIN_SIMILARITY = 0.8
BINARY_ATTRIBUTE_VALUE = "true"

# Reasons used in the summary. The prefix names the kind of line they count.
DISCONTINUOUS = "T: discontinuous span -> covering span"
TRIMMED = "T: surrounding whitespace trimmed"
EXPANDED = "T: span expanded to token boundaries"
TEXT_DIFFERS = "T: .ann text differs from .txt (offsets trusted)"
TEXT_TRAILING_WS = "T: trailing whitespace in .ann text field ignored"
EMPTY_SPAN = "T: empty or whitespace-only span"
DUPLICATE_SPAN = "T: same span and label as another T (merged)"
EVENT_WITHOUT_ARGUMENTS = "E: event without arguments (trigger kept as entity)"
ROLE_NUMBER = "E: numbered role suffix stripped (e.g. Type2 -> Type)"
EQUIVALENCE = "*: equivalence -> relations between consecutive members"
HEAD_SWAP = "R: arguments swapped so the head has a head type"
NOTE = "#: annotator note (not converted)"
NORMALIZATION = "N: normalization (not converted)"
ATTRIBUTE_DUPLICATE = "A: same attribute and value on the same span (merged)"
ATTRIBUTE_CONFLICT = "A: other value for an attribute already set on the span (first kept)"
TXT_WITHOUT_ANN = "document: .txt without .ann (no annotations, skipped)"


def duplicate_relation(kind: str) -> str:
    return f"{kind}: same relation as another (merged)"


def argument_not_converted(kind: str) -> str:
    return f"{kind}: an argument was not converted"


@dataclass
class _Options:
    label_map: Dict[str, str]
    relation_map: Dict[str, str]
    head_types: Set[str]
    text_check: str
    spans_key: str


def read_brat(
    source: Union[str, Path],
    nlp: Union[Language, Vocab],
    *,
    label_map: Optional[Dict[str, str]] = None,
    relation_map: Optional[Dict[str, str]] = None,
    head_types: Optional[Iterable[str]] = None,
    lenient: bool = False,
    spans_key: str = DEFAULT_SPANS_KEY,
    text_check: str = "tolerant",
    progress: bool = False,
) -> Tuple[List[Doc], ConversionSummary]:
    """Read a brat folder (recursively: every ``.ann`` with a ``.txt`` beside it) or one ``.ann``.

    ``head_types`` (labels after ``label_map``): when only Arg2 of an ``R`` line
    has one of these types, the arguments are swapped so the trigger is the head
    (n2c2 2018 writes ``Strength-Drug Arg1:<Strength> Arg2:<Drug>``).
    ``lenient`` records malformed lines in the summary instead of raising.
    ``text_check``: ``"strict"``, ``"tolerant"`` or ``"offsets"`` (see the module
    docstring). ``progress`` shows a progress bar on stderr. ``doc._.doc_id`` is
    the ``.ann`` path relative to ``source``, without its suffix.
    """
    if text_check not in TEXT_CHECKS:
        raise ValueError(f"text_check must be one of {TEXT_CHECKS}, not {text_check!r}")
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"brat input not found: {source}")
    if isinstance(nlp, Vocab):
        nlp = spacy.blank("en", vocab=nlp)
    options = _Options(
        label_map=dict(label_map or {}),
        relation_map=dict(relation_map or {}),
        head_types=set(head_types or ()),
        text_check=text_check,
        spans_key=spans_key,
    )
    summary = ConversionSummary(source=str(source), lenient=lenient)
    if source.is_dir():
        ann_paths = sorted(source.rglob("*.ann"))
        paired = {p.with_suffix(".txt") for p in ann_paths}
        lone_txt = sum(1 for t in source.rglob("*.txt") if t not in paired)
        if lone_txt:
            summary.skip(TXT_WITHOUT_ANN, lone_txt)
        root = source
    else:
        ann_paths = [source]
        root = source.parent
    docs: List[Doc] = []
    for ann_path in tqdm(ann_paths, desc="brat", unit="doc", disable=not progress, file=sys.stderr):
        txt_path = ann_path.with_suffix(".txt")
        if not txt_path.is_file():
            summary.report(CorpusFormatError(ann_path, None, "no .txt beside this .ann"))
            continue
        try:
            text = txt_path.open(encoding="utf-8", newline="").read()
            # a BOM in the .ann is not an annotation (offsets refer to the .txt, read as stored)
            ann_lines = ann_path.open(encoding="utf-8-sig", newline="").read().split("\n")
        except UnicodeDecodeError as err:
            summary.report(CorpusFormatError(ann_path, None, f"not valid UTF-8: {err}"))
            continue
        doc = nlp.make_doc(text)
        doc._.doc_id = ann_path.relative_to(root).with_suffix("").as_posix()
        _AnnFile(ann_path, doc, text, options, summary).convert(ann_lines)
        summary.documents += 1
        docs.append(doc)
    return docs, summary


@dataclass
class _Line:
    number: int
    id: str
    body: str


@dataclass
class _AnnFile:
    """One ``.ann`` file being resolved onto its Doc."""

    path: Path
    doc: Doc
    text: str  # doc.text, which spaCy rebuilds on every access
    options: _Options
    summary: ConversionSummary
    spans: Dict[str, Span] = field(default_factory=dict)  # T and E ids -> span
    raw_labels: Dict[str, str] = field(default_factory=dict)  # T ids -> label as written
    dropped: Set[str] = field(default_factory=set)  # ids defined but not converted
    concepts: Dict[Tuple[int, int, str], Span] = field(default_factory=dict)
    relations: Dict[tuple, Relation] = field(default_factory=dict)
    attributes: Dict[Tuple[int, int, str], Dict[str, str]] = field(default_factory=dict)
    event_arguments: Dict[str, List[str]] = field(default_factory=dict)  # E ids -> ROLE:ID fields

    def error(self, line: int, message: str) -> None:
        self.summary.report(CorpusFormatError(self.path, line, message))

    def convert(self, lines: List[str]) -> None:
        by_kind: Dict[str, List[_Line]] = {kind: [] for kind in "ER*A"}
        first_seen: Dict[str, int] = {}
        for number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r")
            if not line.strip():
                continue
            ann_id, sep, body = line.partition("\t")
            kind = ann_id[:1]
            if not sep or not ann_id.strip():
                self.error(number, f"broken line: expected 'ID<TAB>...', got {line!r}")
                continue
            if kind in "TERAMN" and ann_id in first_seen:
                self.error(number, f"duplicate id: {ann_id} is also defined on line {first_seen[ann_id]}")
                continue
            first_seen[ann_id] = number
            if kind == "T":
                self.textbound(_Line(number, ann_id, body))
            elif kind in "ER*":
                by_kind[kind].append(_Line(number, ann_id, body))
            elif kind in "AM":
                by_kind["A"].append(_Line(number, ann_id, body))
            elif kind == "#":
                self.summary.skip(NOTE)
            elif kind == "N":
                self.summary.skip(NORMALIZATION)
            else:
                self.error(number, f"unknown annotation line type: {line!r}")
        for line in by_kind["E"]:
            self.event_trigger(line)
        for line in by_kind["E"]:
            self.event_relations(line)
        for line in by_kind["R"]:
            self.binary_relation(line)
        for line in by_kind["*"]:
            self.equivalence(line)
        for line in by_kind["A"]:
            self.attribute(line)
        self.finish()

    # --- text-bound annotations -------------------------------------------------

    def textbound(self, line: _Line) -> None:
        self.dropped.add(line.id)  # until it arrives
        type_offsets, sep, ann_text = line.body.partition("\t")
        label, _, offsets = type_offsets.partition(" ")
        fragments = _parse_offsets(offsets)
        if not sep or not label or fragments is None:
            self.error(line.number, f"broken T line: expected 'TYPE START END<TAB>TEXT', got {line.body!r}")
            return
        text = self.text
        end = max(e for _, e in fragments)
        if end > len(text):
            self.error(
                line.number,
                f"offset beyond text: {line.id} ends at {end}, the .txt has {len(text)} characters",
            )
            return
        if not self.text_agrees(line, ann_text, " ".join(text[s:e] for s, e in fragments)):
            return
        if len(fragments) > 1:
            self.summary.adjust(DISCONTINUOUS)
        self.raw_labels[line.id] = label
        span = self.align(min(s for s, _ in fragments), end, self.options.label_map.get(label, label))
        if span is None:
            self.summary.skip(EMPTY_SPAN)
            return
        key = (span.start_char, span.end_char, span.label_)
        if key in self.concepts:
            self.summary.skip(DUPLICATE_SPAN)
        else:
            self.concepts[key] = span
        self.spans[line.id] = self.concepts[key]
        self.dropped.discard(line.id)

    def text_agrees(self, line: _Line, ann_text: str, found: str) -> bool:
        """Compare the .ann text field with the .txt at the offsets (see ``text_check``)."""
        if ann_text == found:
            return True
        if ann_text.rstrip() == found.rstrip():
            self.summary.adjust(TEXT_TRAILING_WS)
            return True
        mode = self.options.text_check
        if mode == "offsets" or (mode == "tolerant" and _differs_inside(ann_text, found)):
            self.summary.adjust(TEXT_DIFFERS)
            return True
        self.error(
            line.number,
            f"text mismatch: {line.id} has {ann_text!r} in the .ann "
            f"but the .txt has {found!r} at those offsets",
        )
        return False

    def align(self, start: int, end: int, label: str) -> Optional[Span]:
        """Trim surrounding whitespace, then expand to token boundaries; None if nothing is left."""
        text = self.text
        trimmed_start, trimmed_end = start, end
        while trimmed_start < trimmed_end and text[trimmed_start].isspace():
            trimmed_start += 1
        while trimmed_end > trimmed_start and text[trimmed_end - 1].isspace():
            trimmed_end -= 1
        if trimmed_start == trimmed_end:
            return None
        if (trimmed_start, trimmed_end) != (start, end):
            self.summary.adjust(TRIMMED)
        span = self.doc.char_span(trimmed_start, trimmed_end, label=label)
        if span is None:
            span = self.doc.char_span(trimmed_start, trimmed_end, label=label, alignment_mode="expand")
            self.summary.adjust(EXPANDED)
        return span

    # --- events, relations, equivalences -----------------------------------------

    def fields(self, line: _Line, kind: str) -> Optional[List[str]]:
        """The space-separated fields of the second column (an empty third column is allowed);
        None, reported, when there are none or the line has more."""
        main, _, rest = line.body.partition("\t")
        if not main.split() or rest.strip():
            self.error(line.number, f"broken {kind} line: no fields, or an extra column, in {line.body!r}")
            return None
        return main.split()

    def resolve(self, line: _Line, refs: Sequence[str], kind: str) -> Optional[List[Span]]:
        """Spans of T ids (E ids: their trigger's), or None, counted: an unknown id is an
        error, an id whose annotation was not converted is a skip."""
        unknown = [ref for ref in refs if ref not in self.spans and ref not in self.dropped]
        if unknown:
            self.error(
                line.number, f"unknown id: {line.id} refers to {', '.join(unknown)}, not defined in this file"
            )
            return None
        if any(ref in self.dropped for ref in refs):
            self.summary.skip(argument_not_converted(kind))
            return None
        return [self.spans[ref] for ref in refs]

    def event_trigger(self, line: _Line) -> None:
        self.dropped.add(line.id)
        fields = self.fields(line, "E")
        if fields is None:
            return
        event_type, _, trigger = fields[0].partition(":")
        if not event_type or not trigger:
            self.error(line.number, f"broken E line: expected 'TYPE:TRIGGER ROLE:ID ...', got {line.body!r}")
            return
        if trigger not in self.raw_labels and trigger not in self.dropped:
            self.error(
                line.number, f"unknown id: trigger {trigger} of {line.id} is not a T defined in this file"
            )
            return
        if trigger in self.raw_labels and self.raw_labels[trigger] != event_type:
            self.error(
                line.number,
                f"event type mismatch: {line.id} is {event_type}, "
                f"its trigger {trigger} is {self.raw_labels[trigger]}",
            )
            return
        self.event_arguments[line.id] = fields[1:]
        if trigger in self.spans:
            self.spans[line.id] = self.spans[trigger]
            self.dropped.discard(line.id)

    def event_relations(self, line: _Line) -> None:
        if line.id not in self.event_arguments:
            return  # a broken line, reported by event_trigger
        arguments = self.event_arguments[line.id]
        if not arguments:
            self.summary.adjust(EVENT_WITHOUT_ARGUMENTS)
        for argument in arguments:
            role, _, ref = argument.partition(":")
            if not role or not ref:
                self.error(line.number, f"broken E line: argument {argument!r} is not ROLE:ID")
                continue
            base_role = re.sub(r"\d+$", "", role)
            if base_role != role:
                self.summary.adjust(ROLE_NUMBER)
            spans = self.resolve(line, [line.id, ref], "E")
            if spans is not None:
                self.add_relation("E", spans[0], spans[1], base_role)

    def binary_relation(self, line: _Line) -> None:
        fields = self.fields(line, "R")
        if fields is None:
            return
        refs = [f.partition(":")[2] for f in fields[1:]]
        if len(fields) != 3 or not all(refs):
            self.error(line.number, f"broken R line: expected 'TYPE Arg1:ID Arg2:ID', got {line.body!r}")
            return
        spans = self.resolve(line, refs, "R")
        if spans is None:
            return
        head, tail = spans
        heads = self.options.head_types
        if heads and tail.label_ in heads and head.label_ not in heads:
            head, tail = tail, head
            self.summary.adjust(HEAD_SWAP)
        self.add_relation("R", head, tail, fields[0])

    def equivalence(self, line: _Line) -> None:
        fields = self.fields(line, "*")
        if fields is None:
            return
        if len(fields) < 3:
            self.error(line.number, f"broken * line: expected 'TYPE ID ID ...', got {line.body!r}")
            return
        self.summary.adjust(EQUIVALENCE)
        members = fields[1:]
        for pair in zip(members, members[1:]):
            spans = self.resolve(line, pair, "*")
            if spans is not None:
                self.add_relation("*", spans[0], spans[1], fields[0])

    def add_relation(self, kind: str, head: Span, tail: Span, label: str) -> None:
        relation = Relation(head, tail, self.options.relation_map.get(label, label))
        if relation.key() in self.relations:
            self.summary.skip(duplicate_relation(kind))
        else:
            self.relations[relation.key()] = relation

    # --- attributes -----------------------------------------------------------------

    def attribute(self, line: _Line) -> None:
        fields = self.fields(line, "A")
        if fields is None:
            return
        if len(fields) not in (2, 3):
            self.error(line.number, f"broken A line: expected 'NAME TARGET [VALUE]', got {line.body!r}")
            return
        name, target = fields[0], fields[1]
        value = fields[2] if len(fields) == 3 else BINARY_ATTRIBUTE_VALUE
        spans = self.resolve(line, [target], "A")
        if spans is None:
            return
        span = spans[0]
        attributes = self.attributes.setdefault((span.start_char, span.end_char, span.label_), {})
        if name not in attributes:
            attributes[name] = value
            self.summary.attributes[f"{name}={value}"] += 1
        elif attributes[name] == value:
            self.summary.skip(ATTRIBUTE_DUPLICATE)
        else:
            self.summary.skip(ATTRIBUTE_CONFLICT)

    # --- onto the Doc ---------------------------------------------------------------

    def finish(self) -> None:
        set_concepts(self.doc, list(self.concepts.values()), spans_key=self.options.spans_key)
        set_relations(self.doc, self.relations.values())
        for key, attributes in self.attributes.items():
            set_span_attributes(self.concepts[key], attributes)
        self.summary.entities.update(span.label_ for span in self.concepts.values())
        self.summary.relations.update(relation.label for relation in self.relations.values())


def _parse_offsets(offsets: str) -> Optional[List[Tuple[int, int]]]:
    """``"0 5;9 14"`` -> ``[(0, 5), (9, 14)]``; None when malformed."""
    fragments = []
    for fragment in offsets.split(";"):
        parts = fragment.split()
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
            return None
        start, end = int(parts[0]), int(parts[1])
        if start > end:
            return None
        fragments.append((start, end))
    return fragments


def _differs_inside(ann_text: str, found: str) -> bool:
    """The "tolerant" text check: same first and last character (ignoring case), >= 80 % similar."""
    a, b = ann_text.casefold(), found.casefold()
    if not a or not b or a[0] != b[0] or a[-1] != b[-1]:
        return False
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= TOLERANT_MIN_SIMILARITY


# --- writing ----------------------------------------------------------------------------


def write_brat(
    doc: Doc,
    ann_path: Union[str, Path],
    *,
    txt_path: Union[str, Path, None] = None,
    spans_key: str = DEFAULT_SPANS_KEY,
    relation_map: Optional[Dict[str, str]] = None,
    tail_first: bool = False,
) -> None:
    """Write ``doc``'s concepts, relations and attributes as a brat ``.ann`` (and the ``.txt``).

    Concepts come from ``doc.spans[spans_key]`` (``doc.ents`` when the key is
    missing). A span crossing a line break is written as fragments around the
    break, as brat does; reading it back gives the same covering span.
    ``tail_first`` writes the relation tail as Arg1 (n2c2 2018:
    ``ADE-Drug Arg1:<ADE> Arg2:<Drug>``).
    """
    relation_map = relation_map or {}
    text = doc.text
    spans = list(doc.spans[spans_key]) if spans_key in doc.spans else list(doc.ents)
    ids: Dict[Tuple[int, int, str], str] = {}
    written: List[Span] = []
    lines: List[str] = []

    def textbound_id(span: Span) -> str:
        key = (span.start_char, span.end_char, span.label_)
        if key not in ids:
            ids[key] = f"T{len(ids) + 1}"
            written.append(span)
            fragments = _line_fragments(text, span.start_char, span.end_char)
            offsets = ";".join(f"{s} {e}" for s, e in fragments)
            fragment_text = " ".join(text[s:e] for s, e in fragments)
            lines.append(f"{ids[key]}\t{span.label_} {offsets}\t{fragment_text}")
        return ids[key]

    for span in sorted(spans, key=lambda s: (s.start_char, s.end_char, s.label_)):
        textbound_id(span)
    for number, relation in enumerate(doc._.relations, start=1):
        arg1, arg2 = (relation.tail, relation.head) if tail_first else (relation.head, relation.tail)
        label = relation_map.get(relation.label, relation.label)
        lines.append(f"R{number}\t{label} Arg1:{textbound_id(arg1)} Arg2:{textbound_id(arg2)}")
    number = 0
    for span in written:
        for name, value in sorted(span._.attributes.items()):
            number += 1
            suffix = "" if value == BINARY_ATTRIBUTE_VALUE else f" {value}"
            lines.append(f"A{number}\t{name} {ids[(span.start_char, span.end_char, span.label_)]}{suffix}")
    ann_path = Path(ann_path)
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    with ann_path.open("w", encoding="utf-8", newline="") as out:
        out.write("".join(line + "\n" for line in lines))
    if txt_path is not None:
        Path(txt_path).parent.mkdir(parents=True, exist_ok=True)
        with Path(txt_path).open("w", encoding="utf-8", newline="") as out:
            out.write(text)


def _line_fragments(text: str, start: int, end: int) -> List[Tuple[int, int]]:
    """Split ``text[start:end]`` at line breaks: a brat text field must stay on one line."""
    fragments = [(m.start() + start, m.end() + start) for m in re.finditer(r"[^\r\n]+", text[start:end])]
    return fragments or [(start, end)]
