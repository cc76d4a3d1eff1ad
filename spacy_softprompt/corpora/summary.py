"""What a converter did with every annotation of its source.

Each reader fills one :class:`ConversionSummary`: what arrived in the Docs
(documents, entities and relations per label), what was changed on the way
(``adjusted``: e.g. a discontinuous span stored as its covering span with its
fragments, a span expanded to token boundaries) and what did not arrive (``not_converted``, with
the reason). Malformed input raises :class:`CorpusFormatError` naming file and
line; in lenient mode the same message is recorded in ``problems`` instead.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union


class CorpusFormatError(ValueError):
    """Malformed corpus input; the message names the file and line."""

    def __init__(self, path: Union[str, Path], line: Optional[int], message: str):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass
class ConversionSummary:
    """Counts of what a conversion produced, changed, skipped and found wrong."""

    source: str = ""
    documents: int = 0
    entities: Counter = field(default_factory=Counter)
    relations: Counter = field(default_factory=Counter)
    attributes: Counter = field(default_factory=Counter)
    adjusted: Counter = field(default_factory=Counter)
    not_converted: Counter = field(default_factory=Counter)
    problems: List[str] = field(default_factory=list)
    lenient: bool = False
    #: documents per class, when the conversion also wrote doc.cats (e.g. ``--cats-from-status``)
    cats: Counter = field(default_factory=Counter)
    #: documents per branch of the rule that chose their class
    cats_reasons: Counter = field(default_factory=Counter)
    #: concept and relation labels as the source names them, before a map renames them (what a
    #: map's old names are checked against: a typo renames nothing); not part of the summary
    source_labels: Counter = field(default_factory=Counter)

    def report(self, error: CorpusFormatError) -> None:
        """Raise ``error``, or record it when converting leniently."""
        if not self.lenient:
            raise error
        self.problems.append(str(error))
        self.not_converted[f"malformed input: {error.reason.split(':')[0]}"] += 1

    def skip(self, reason: str, n: int = 1) -> None:
        self.not_converted[reason] += n

    def adjust(self, what: str, n: int = 1) -> None:
        self.adjusted[what] += n

    def merge(self, other: "ConversionSummary") -> None:
        self.documents += other.documents
        for mine, theirs in (
            (self.entities, other.entities),
            (self.relations, other.relations),
            (self.attributes, other.attributes),
            (self.adjusted, other.adjusted),
            (self.not_converted, other.not_converted),
            (self.cats, other.cats),
            (self.cats_reasons, other.cats_reasons),
            (self.source_labels, other.source_labels),
        ):
            mine.update(theirs)
        self.problems.extend(other.problems)

    def to_dict(self) -> Dict:
        return {
            "source": self.source,
            "documents": self.documents,
            "entities": dict(sorted(self.entities.items())),
            "relations": dict(sorted(self.relations.items())),
            "attributes": dict(sorted(self.attributes.items())),
            "adjusted": dict(sorted(self.adjusted.items())),
            "not_converted": dict(sorted(self.not_converted.items())),
            "problems": list(self.problems),
            "cats": dict(sorted(self.cats.items())),
            "cats_reasons": dict(sorted(self.cats_reasons.items())),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        lines = [f"## Conversion summary: {self.source}", "", f"Documents: {self.documents}", ""]
        for title, counts in (
            ("Entities", self.entities),
            ("Relations", self.relations),
            ("Attributes", self.attributes),
            ("Adjusted on the way (kept, changed as stated)", self.adjusted),
            ("Not converted (with reason)", self.not_converted),
        ):
            lines += [f"### {title}", ""]
            if counts:
                lines += ["| what | count |", "| --- | ---: |"]
                lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
                lines += [f"| **total** | **{sum(counts.values())}** |"]
            else:
                lines.append("none")
            lines.append("")
        if self.cats:  # derived from the annotations above, not annotations of their own
            lines += ["### Document classes (doc.cats)", "", "| class | documents |", "| --- | ---: |"]
            lines += [f"| {k} | {v} |" for k, v in self.cats.items()]
            lines += [f"| **total** | **{sum(self.cats.values())}** |", "", "| why | documents |", "| --- | ---: |"]
            lines += [f"| {k} | {v} |" for k, v in sorted(self.cats_reasons.items())] + [""]
        if self.problems:
            lines += ["### Problems (lenient mode)", ""] + [f"- {p}" for p in self.problems] + [""]
        return "\n".join(lines)


def read_utf8(path: Path, summary: ConversionSummary, why: str = "") -> Optional[str]:
    """The file as stored (no newline translation; a byte order mark is the reader's to judge); a
    file that cannot be read or is not UTF-8 is reported against *this* file and line (``why``:
    what depends on the encoding, said in the message)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        summary.report(CorpusFormatError(path, None, f"cannot read: {err.strerror or err}"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        summary.report(
            CorpusFormatError(
                path,
                line,
                f"not valid UTF-8: byte 0x{data[err.start]:02x} at column {column} (byte {err.start} of the file); "
                f"{why}re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
            )
        )
        return None
