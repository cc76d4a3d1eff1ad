"""One ``.ann`` file resolved onto its Doc (the rules are listed in :mod:`.brat`)."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

from spacy.tokens import Doc, Span

from ..fragments import set_fragments
from ..relations import Relation, set_concepts, set_relations, set_span_attributes
from . import brat_reasons as why
from .brat_lines import (AnnLine, Fragments, Options, broken_line, crosses_line, differs_inside, parse_offsets,
                         starts_like_an_annotation)
from .brat_store import Record, Ref, add_records, mention_of, relation_key, span_of
from .summary import ConversionSummary, CorpusFormatError

SpanKey = Tuple[int, int, str]


@dataclass
class AnnFile:
    """One ``.ann`` file being resolved onto its Doc."""

    path: Path
    doc: Doc
    text: str  # doc.text, which spaCy rebuilds on every access
    options: Options
    summary: ConversionSummary
    refs: Dict[str, Ref] = field(default_factory=dict)  # T and E ids -> reference
    raw_labels: Dict[str, str] = field(default_factory=dict)  # T ids -> label as written
    dropped: Set[str] = field(default_factory=set)  # ids defined but not converted
    spans: Dict[SpanKey, Span] = field(default_factory=dict)
    variants: Dict[SpanKey, List[Fragments]] = field(default_factory=dict)
    relations: Dict[tuple, Relation] = field(default_factory=dict)
    links: Set[tuple] = field(default_factory=set)  # (head ref, tail ref, label) already seen
    attributes: Dict[SpanKey, Dict[str, str]] = field(default_factory=dict)
    records: List[Record] = field(default_factory=list)
    events_on: Counter = field(default_factory=Counter)  # trigger mention -> events so far

    def error(self, line: int, message: str) -> None:
        self.summary.report(CorpusFormatError(self.path, line, message))

    def convert(self, lines: List[AnnLine]) -> None:
        by_kind: Dict[str, List[AnnLine]] = {kind: [] for kind in "ER*A#N"}
        first_seen: Dict[str, int] = {}
        for line in lines:
            kind = line.id[:1]
            if kind in "TERAMN" and line.id in first_seen:
                self.error(line.number, f"duplicate id: {line.id} is also defined on line {first_seen[line.id]}")
                self.release(line)
                continue
            first_seen[line.id] = line.number
            if kind == "T":
                self.textbound(line)
            elif kind in "ER*":
                by_kind[kind].append(line)
            elif kind in "AM":
                by_kind["A"].append(line)
            elif kind in "#N":
                by_kind[kind].append(line)
            else:
                self.error(line.number, f"unknown annotation line type: {line.id!r} (expected {why.line_form('')})")
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
        for line in by_kind["#"] + by_kind["N"]:
            self.not_converted(line, first_seen)
        self.finish()

    # --- text-bound annotations -------------------------------------------------

    def textbound(self, line: AnnLine) -> None:
        self.dropped.add(line.id)  # until it arrives
        type_offsets, sep, ann_text = line.body.partition("\t")
        label, _, offsets = type_offsets.partition(" ")
        fragments = parse_offsets(offsets)
        if not sep or not label or fragments is None:
            self.error(line.number, f"broken T line: expected {why.line_form('T')}, got {line.id}\\t{line.body!r}")
            return self.release(line)
        end = max(e for _, e in fragments)
        if end > len(self.text):
            self.error(line.number, f"offset beyond text: {line.id} ends at {end}, the .txt has {len(self.text)} characters")
            return self.release(line)
        found = " ".join(self.text[s:e] for s, e in fragments)
        joined = "\n".join([ann_text, *(text for _, text in line.continued)])
        reason = self.text_reason(joined, found, continued=True) if line.continued else None
        if not reason or reason == why.TEXT_DIFFERS:  # the lines may not be text: try the line alone
            single = self.text_reason(ann_text, found, continued=False)
            if single and (single != why.TEXT_DIFFERS or not reason
                           or any(starts_like_an_annotation(text) for _, text in line.continued)):
                self.release(line)
                reason = single
            elif not reason:
                later = ""
                if line.continued:
                    later = f" (nor with lines {line.continued[0][0]}-{line.continued[-1][0]} as its continuation)"
                self.error(
                    line.number,
                    f"text mismatch: {line.id} has {ann_text!r} in the .ann but the .txt has {found!r} "
                    f"at {offsets.strip()}{later}",
                )
                return self.release(line)  # (lenient) the lines after it are broken lines of their own
        if reason is not True:
            self.summary.adjust(reason)
        if len(fragments) > 1:
            self.summary.adjust(why.DISCONTINUOUS)
        self.raw_labels[line.id] = label
        self.summary.source_labels[("concept", label)] += 1
        span = self.align(min(s for s, _ in fragments), end, self.options.label_map.get(label, label))
        if span is None:
            self.summary.skip(why.EMPTY_SPAN)
            return
        key = (span.start_char, span.end_char, span.label_)
        variants = self.variants.setdefault(key, [])
        if fragments in variants:
            self.summary.skip(why.DUPLICATE_SPAN)
        elif variants:
            self.summary.adjust(why.SHARED_SPAN)
            variants.append(fragments)
        else:
            variants.append(fragments)
            self.spans[key] = span
        self.refs[line.id] = (*key, variants.index(fragments))
        self.dropped.discard(line.id)

    def release(self, line: AnnLine) -> None:
        """Lines taken as a T's continuation that were not: each is a broken line."""
        for number, text in line.continued:
            if text.strip():
                self.error(number, broken_line(text))
        line.continued = []

    def text_reason(self, ann_text: str, found: str, continued: bool):
        """True (identical), the adjustment that makes them agree, or None (see ``text_check``)."""
        if ann_text == found:
            return True if not continued else why.TEXT_CONTINUED
        if ann_text.replace("\r", "") == found.replace("\r", ""):
            return why.TEXT_CONTINUED if continued else why.TEXT_CR
        if continued:  # continuation lines only as many as the line breaks the .txt span crosses
            if ann_text.count("\n") != re.sub(r"\r\n|\r", "\n", found).count("\n"):
                return None
        elif ann_text == re.sub(r"\r\n|\r|\n", " ", found):
            return why.TEXT_LINE_BREAK
        elif ann_text.rstrip() == found.rstrip():
            return why.TEXT_TRAILING_WS if ann_text != ann_text.rstrip() else why.TEXT_TXT_TRAILING_WS
        mode = self.options.text_check
        if mode == "offsets" or (mode == "tolerant" and differs_inside(ann_text, found)):
            return why.TEXT_DIFFERS
        return None

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
            self.summary.adjust(why.TRIMMED)
        span = self.doc.char_span(trimmed_start, trimmed_end, label=label)
        if span is None:
            span = self.doc.char_span(trimmed_start, trimmed_end, label=label, alignment_mode="expand")
            self.summary.adjust(why.EXPANDED)
        return span

    # --- events, relations, equivalences -----------------------------------------

    def fields(self, line: AnnLine, kind: str) -> Optional[List[str]]:
        """The space-separated fields of the second column (an empty third column is allowed)."""
        main, _, rest = line.body.partition("\t")
        if not main.split() or rest.strip():
            self.error(line.number, f"broken {kind} line: expected {why.line_form(kind)}, got {line.id}\\t{line.body!r}")
            return None
        return main.split()

    def resolve(self, line: AnnLine, ids: Sequence[str], kind: str) -> Optional[List[Ref]]:
        """References of T/E ids, or None, counted: an unknown id is an error, an id whose
        annotation was not converted is a skip."""
        if not self.all_defined(line, ids):
            return None
        if any(i in self.dropped for i in ids):
            self.summary.skip(why.argument_not_converted(kind))
            return None
        return [self.refs[i] for i in ids]

    def all_defined(self, line: AnnLine, ids: Sequence[str]) -> bool:
        """Whether every id is a T or E of this file (converted or not); if not, an error."""
        unknown = [i for i in ids if i not in self.refs and i not in self.dropped]
        if unknown:
            self.error(line.number, f"unknown id: {line.id} refers to {', '.join(unknown)}, not defined in this file")
        return not unknown

    def event_trigger(self, line: AnnLine) -> None:
        self.dropped.add(line.id)
        fields = self.fields(line, "E")
        if fields is None:
            return
        event_type, _, trigger = fields[0].partition(":")
        if not event_type or not trigger or not all(_role(f) and not f.endswith(":") for f in fields[1:]):
            self.error(line.number, f"broken E line: expected {why.line_form('E')}, got {line.id}\\t{line.body!r}")
            return
        if trigger not in self.raw_labels and trigger not in self.dropped:
            self.error(line.number, f"unknown id: trigger {trigger} of {line.id} is not a T defined in this file")
            return
        if trigger in self.raw_labels and self.raw_labels[trigger] != event_type:
            self.error(
                line.number,
                f"event type mismatch: {line.id} is {event_type}, its trigger {trigger} is {self.raw_labels[trigger]}",
            )
            return
        if trigger in self.refs:
            mention = mention_of(self.refs[trigger])
            self.refs[line.id] = (*mention, self.events_on[mention])
            self.events_on[mention] += 1
            self.dropped.discard(line.id)
        else:  # the trigger was not converted: the event and each argument are lost
            self.summary.skip(why.argument_not_converted("E"), max(1, len(fields) - 1))

    def event_relations(self, line: AnnLine) -> None:
        if line.id not in self.refs:
            return  # broken or not converted: reported by event_trigger
        fields = self.fields(line, "E")
        event_type, trigger_ref = fields[0].partition(":")[0], self.refs[line.id]
        record = Record("E", event_type, [trigger_ref])
        if len(fields) == 1:
            self.summary.adjust(why.EVENT_WITHOUT_ARGUMENTS)
        for argument in fields[1:]:
            role, _, ref = argument.partition(":")
            base_role = _role(argument)
            if base_role != role:
                self.summary.adjust(why.ROLE_NUMBER)
            refs = self.resolve(line, [ref], "E")
            self.summary.source_labels[("relation", base_role)] += 1
            if refs is not None:
                label = self.options.relation_map.get(base_role, base_role)
                record.refs.append(refs[0])
                record.roles.append(role)
                record.labels.append(label)
                self.add_relation("E", trigger_ref, refs[0], label)
        self.records.append(record)

    def binary_relation(self, line: AnnLine) -> None:
        fields = self.fields(line, "R")
        if fields is None:
            return
        names, ids = zip(*(f.partition(":")[::2] for f in fields[1:])) if len(fields) > 1 else ((), ())
        if len(fields) != 3 or not all(ids) or not all(names):
            self.error(line.number, f"broken R line: expected {why.line_form('R')}, got {line.id}\\t{line.body!r}")
            return
        if names == ("Arg2", "Arg1"):
            names, ids = names[::-1], ids[::-1]
            self.summary.adjust(why.ARG2_FIRST)
        elif set(names) != {"Arg1", "Arg2"}:
            if len(set(names)) < 2:
                self.error(line.number, f"broken R line: two arguments named {names[0]}, expected Arg1 and Arg2, "
                                        f"got {line.id}\\t{line.body!r}")
                return
            self.summary.adjust(why.OTHER_ARG_NAMES)
        refs = self.resolve(line, ids, "R")
        self.summary.source_labels[("relation", fields[0])] += 1
        if refs is None:
            return
        label = self.options.relation_map.get(fields[0], fields[0])
        heads = self.options.head_types
        swapped = bool(heads) and refs[1][2] in heads and refs[0][2] not in heads
        if swapped:
            self.summary.adjust(why.HEAD_SWAP)
        record = Record("R", fields[0], list(refs), list(names), [label], swapped=swapped)
        self.records.append(record)
        for head, tail, label in record.relations():
            self.add_relation("R", head, tail, label)

    def equivalence(self, line: AnnLine) -> None:
        fields = self.fields(line, "*")
        if fields is None:
            return
        if len(fields) < 3:
            self.error(line.number, f"broken * line: expected {why.line_form('*')}, got {line.id}\\t{line.body!r}")
            return
        members = fields[1:]
        if not self.all_defined(line, members):
            return
        self.summary.source_labels[("relation", fields[0])] += 1
        kept = [i for i in members if i not in self.dropped]  # the others are equivalent to them no less
        if len(kept) < len(members):
            self.summary.skip(why.argument_not_converted("*"), len(members) - len(kept))
        if len(kept) < 2:
            return
        self.summary.adjust(why.EQUIVALENCE)
        refs = [self.refs[i] for i in kept]
        record = Record("*", fields[0], refs, labels=[self.options.relation_map.get(fields[0], fields[0])])
        self.records.append(record)
        for head, tail, label in record.relations():
            self.add_relation("*", head, tail, label)

    def add_relation(self, kind: str, head: Ref, tail: Ref, label: str) -> None:
        """One span-level relation; a repeated line or a repeated span pair is counted, not added twice."""
        if span_of(head) == span_of(tail):
            self.summary.adjust(why.self_relation(kind, mention_of(head) == mention_of(tail)))
        key = relation_key(head, tail, label)
        if (head, tail, label) in self.links:
            self.summary.skip(why.duplicate_relation(kind))
        elif key in self.relations:
            self.summary.adjust(why.shared_relation(kind))
        else:
            self.relations[key] = Relation(self.spans[span_of(head)], self.spans[span_of(tail)], label)
        self.links.add((head, tail, label))

    def not_converted(self, line: AnnLine, defined: Dict[str, int]) -> None:
        """An annotator note or a normalization: checked (its form, the id it is about), then counted."""
        kind = line.id[:1]
        parts = line.body.partition("\t")[0].split()  # the text after the tab may be left out
        if len(parts) != (2 if kind == "#" else 3):
            self.error(line.number, f"broken {kind} line: expected {why.line_form(kind)}, got {line.id}\\t{line.body!r}")
        elif parts[1] not in defined:
            self.error(line.number, f"unknown id: {line.id} is about {parts[1]}, not defined in this file")
        else:
            self.summary.skip(why.NOTE if kind == "#" else why.NORMALIZATION)

    # --- attributes -----------------------------------------------------------------

    def attribute(self, line: AnnLine) -> None:
        fields = self.fields(line, line.id[:1])
        if fields is None:
            return
        if len(fields) not in (2, 3):
            self.error(line.number, f"broken A line: expected {why.line_form('A')}, got {line.id}\\t{line.body!r}")
            return
        name, target = fields[0], fields[1]
        value = fields[2] if len(fields) == 3 else None
        refs = self.resolve(line, [target], "A")
        if refs is None:
            return
        self.records.append(Record("A", name, refs, value=value))
        value = why.BINARY_ATTRIBUTE_VALUE if value is None else value
        attributes = self.attributes.setdefault(span_of(refs[0]), {})
        if name not in attributes:
            attributes[name] = value
            self.summary.attributes[f"{name}={value}"] += 1
        elif attributes[name] == value:
            self.summary.skip(why.ATTRIBUTE_DUPLICATE)
        else:
            self.summary.skip(why.ATTRIBUTE_CONFLICT)

    # --- onto the Doc ---------------------------------------------------------------

    def finish(self) -> None:
        set_concepts(self.doc, list(self.spans.values()), spans_key=self.options.spans_key)
        set_relations(self.doc, self.relations.values(), source=self.options.spans_key)
        for key, span in self.spans.items():
            variants = self.variants[key]
            set_fragments(span, variants, keep_default=any(crosses_line(self.text, f) for f in variants))
        for key, attributes in self.attributes.items():
            set_span_attributes(self.spans[key], attributes)
        add_records(self.doc, self.records)
        self.summary.entities.update(span.label_ for span in self.spans.values())
        self.summary.relations.update(relation.label for relation in self.relations.values())


def _role(argument: str) -> str:
    """An event argument's role without its number (``Type2:T5`` -> ``Type``); '' when it has none."""
    role, colon, _ = argument.partition(":")
    return re.sub(r"\d+$", "", role) if colon else ""
