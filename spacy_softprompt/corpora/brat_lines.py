"""Lines of a brat ``.ann``: their parts, offsets, and what a broken one should look like."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Dict, List, Optional, Set, Tuple

from . import brat_reasons as why

TOLERANT_MIN_SIMILARITY = 0.8
Fragments = List[Tuple[int, int]]


@dataclass
class Options:
    label_map: Dict[str, str]
    relation_map: Dict[str, str]
    head_types: Set[str]
    text_check: str
    spans_key: str


@dataclass
class AnnLine:
    """An annotation line; ``continued``: the lines after a T line that may continue its text field."""

    number: int
    id: str
    body: str
    continued: List[Tuple[int, str]] = field(default_factory=list)


def crosses_line(text: str, fragments: Fragments) -> bool:
    return any("\n" in text[s:e] or "\r" in text[s:e] for s, e in fragments)


def parse_offsets(offsets: str) -> Optional[Fragments]:
    """``"0 5;9 14"`` -> ``[(0, 5), (9, 14)]``; None when malformed (negative, reversed, not numbers)."""
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


def differs_inside(ann_text: str, found: str) -> bool:
    """The "tolerant" text check: same first and last character (ignoring case), >= 80 % similar."""
    a, b = ann_text.casefold(), found.casefold()
    if not a or not b or a[0] != b[0] or a[-1] != b[-1]:
        return False
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= TOLERANT_MIN_SIMILARITY


ID_PATTERN = re.compile(r"[TREAMN]\d+|#\d*|\*")


def _first_word(line: str) -> str:
    return re.split(r"[ \t]", line, maxsplit=1)[0]


def starts_like_an_annotation(line: str) -> bool:
    """Whether ``line`` begins with an annotation id (``R1 Causes ...``): a line a text field
    continued into is text only when nothing else explains it."""
    return bool(ID_PATTERN.fullmatch(_first_word(line)))


def broken_line(line: str) -> str:
    """The message for a line that is not ``ID<TAB>...``: what it should look like."""
    first = _first_word(line)
    if " " in line.split("\t", 1)[0] and starts_like_an_annotation(line):
        fixed = first + "\t" + line[len(first) :].lstrip(" \t")
        return (
            f"broken line: the id {first} is followed by a space, not a tab; a {first[0]} line is "
            f"{why.line_form(first[0])}, e.g. {fixed!r}"
        )
    return f"broken line: expected an id, a tab, then the annotation ({why.line_form('')}), got {line!r}"
