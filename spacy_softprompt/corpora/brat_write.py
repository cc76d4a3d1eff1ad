"""Writing a Doc as brat standoff: ``.txt`` byte for byte, ``.ann`` from the Doc's annotations.

Every concept of the span group is written with each of its fragment lists
(``span._.fragments``: one ``T`` line per source annotation, discontinuous ones
as ``start end;start end``). A concept with no stored fragments (a prediction,
an ADE document) that crosses a line break is written as fragments around the
break, as brat does. The ``E``, ``R``, ``*`` and ``A`` lines the reader kept
(:mod:`.brat_store`) are written back as they were, ids renumbered, while they
still describe the Doc's relations and attributes; otherwise (a prediction, an
edited Doc) each relation is an ``R`` line and each attribute an ``A`` line.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from spacy.tokens import Doc, Span

from ..fragments import stored_variants
from ..relations import DEFAULT_SPANS_KEY, concept_spans
from . import brat_reasons as why
from .brat_store import Mention, Record, Ref, get_records, mention_of, records_describe

LINE_BREAK = re.compile(r"\r\n|\r|\n")


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
    missing). ``relation_map`` renames relation labels on the way out.
    ``tail_first`` writes a relation's tail as Arg1 (n2c2 2018:
    ``ADE-Drug Arg1:<ADE> Arg2:<Drug>``); lines kept from a brat source keep
    their own argument order.
    """
    lines = _AnnWriter(doc, list(concept_spans(doc, spans_key)), relation_map or {}).lines(tail_first)
    ann_path = Path(ann_path)
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    with ann_path.open("w", encoding="utf-8", newline="") as out:
        out.write("".join(line + "\n" for line in lines))
    if txt_path is not None:
        Path(txt_path).parent.mkdir(parents=True, exist_ok=True)
        with Path(txt_path).open("w", encoding="utf-8", newline="") as out:
            out.write(doc.text)


class _AnnWriter:
    """The ``.ann`` lines of one Doc: T lines first, then E, R, ``*`` and A."""

    def __init__(self, doc: Doc, spans: List[Span], relation_map: Dict[str, str]):
        self.doc, self.text, self.spans, self.relation_map = doc, doc.text, spans, relation_map
        self.variants: Dict[Tuple[int, int, str], List[List[Tuple[int, int]]]] = {}
        for span in sorted(spans, key=lambda s: (s.start_char, s.end_char, s.label_)):
            key = (span.start_char, span.end_char, span.label_)
            self.variants[key] = stored_variants(doc, *key) or [line_fragments(self.text, key[0], key[1])]
        self.t_ids: Dict[Mention, str] = {}
        self.out: List[str] = []
        for key, variants in self.variants.items():
            for index in range(len(variants)):
                self.t_id((*key, index))

    def t_id(self, mention: Mention) -> str:
        if mention[:3] not in self.variants:  # a relation argument outside the span group
            self.variants[mention[:3]] = [line_fragments(self.text, mention[0], mention[1])]
        if mention not in self.t_ids:
            self.t_ids[mention] = f"T{len(self.t_ids) + 1}"
            fragments = self.variants[mention[:3]][mention[3]]
            offsets = ";".join(f"{s} {e}" for s, e in fragments)
            found = LINE_BREAK.sub(" ", " ".join(self.text[s:e] for s, e in fragments))
            self.out.append(f"{self.t_ids[mention]}\t{mention[2]} {offsets}\t{found}")
        return self.t_ids[mention]

    def lines(self, tail_first: bool) -> List[str]:
        records = get_records(self.doc)
        if records and all(self.known(ref) for r in records for ref in r.refs) and records_describe(
            self.doc, records, self.spans
        ):
            self.write_records(records)
        else:
            self.write_relations(tail_first)
        return self.out

    def known(self, ref: Ref) -> bool:
        return ref[:3] in self.variants and ref[3] < len(self.variants[ref[:3]])

    def label(self, label: str, written: str) -> str:
        """The label to write: renamed by ``relation_map``, else as written when it is the same label."""
        out = self.relation_map.get(label, label)
        return written if re.sub(r"\d+$", "", written) == out else out

    def write_records(self, records: List[Record]) -> None:
        e_ids: Dict[Ref, str] = {}
        on_trigger: Dict[Mention, int] = {}
        for record in records:
            if record.kind == "E":
                mention = mention_of(record.refs[0])
                e_ids[(*mention, on_trigger.get(mention, 0))] = f"E{len(e_ids) + 1}"
                on_trigger[mention] = on_trigger.get(mention, 0) + 1

        def ref_id(ref: Ref) -> str:
            return e_ids[ref] if len(ref) == 5 else self.t_id(ref)  # type: ignore[arg-type,index]

        events = iter(e_ids.values())
        counts = {"R": 0, "A": 0}
        for record in records:
            ids = [ref_id(ref) for ref in record.refs]
            if record.kind == "E":
                trigger = mention_of(record.refs[0])
                arguments = "".join(
                    f" {self.label(label, role)}:{ref}" for role, label, ref in zip(record.roles, record.labels, ids[1:])
                )
                self.out.append(f"{next(events)}\t{trigger[2]}:{self.t_id(trigger)}{arguments}")
            elif record.kind == "R":
                counts["R"] += 1
                name1, name2 = record.roles
                label = self.label(record.labels[0], record.type)
                self.out.append(f"R{counts['R']}\t{label} {name1}:{ids[0]} {name2}:{ids[1]}")
            elif record.kind == "*":
                self.out.append(f"*\t{self.label(record.labels[0], record.type)} {' '.join(ids)}")
            else:
                counts["A"] += 1
                value = "" if record.value is None else f" {record.value}"
                self.out.append(f"A{counts['A']}\t{record.type} {ids[0]}{value}")

    def write_relations(self, tail_first: bool) -> None:
        """No kept lines (or they no longer describe the Doc): one R line per relation, A per attribute."""
        for number, relation in enumerate(self.doc._.relations, start=1):
            arg1, arg2 = (relation.tail, relation.head) if tail_first else (relation.head, relation.tail)
            label = self.relation_map.get(relation.label, relation.label)
            self.out.append(f"R{number}\t{label} Arg1:{self.t_id(_first(arg1))} Arg2:{self.t_id(_first(arg2))}")
        number = 0
        for span in sorted(self.spans, key=lambda s: (s.start_char, s.end_char, s.label_)):
            for name, value in sorted(span._.attributes.items()):
                number += 1
                suffix = "" if value == why.BINARY_ATTRIBUTE_VALUE else f" {value}"
                self.out.append(f"A{number}\t{name} {self.t_id(_first(span))}{suffix}")


def _first(span: Span) -> Mention:
    return span.start_char, span.end_char, span.label_, 0


def line_fragments(text: str, start: int, end: int) -> List[Tuple[int, int]]:
    """Split ``text[start:end]`` at line breaks: a brat text field must stay on one line."""
    fragments = [(m.start() + start, m.end() + start) for m in re.finditer(r"[^\r\n]+", text[start:end])]
    return fragments or [(start, end)]
