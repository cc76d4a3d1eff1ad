"""What the brat reader says in its summary, and what each kind of line should look like.

The prefix of a reason names the kind of line it counts (``T:``, ``R:`` ...),
so the summary can be checked against the raw files line kind by line kind.
Each reason says what really happened, and where (the ``.txt`` or the ``.ann``).
"""
from __future__ import annotations

BINARY_ATTRIBUTE_VALUE = "true"

DISCONTINUOUS = "T: discontinuous span (covering span in the span group, fragments in span._.fragments)"
TRIMMED = "T: whitespace of the .txt at the span's edge trimmed"
EXPANDED = "T: span expanded to token boundaries (offsets kept in span._.fragments)"
TEXT_DIFFERS = "T: .ann text differs from .txt (offsets trusted)"
TEXT_TRAILING_WS = "T: trailing whitespace in the .ann text field (not in the .txt) ignored"
TEXT_TXT_TRAILING_WS = "T: the .txt span ends in whitespace the .ann text field lacks (offsets trusted)"
TEXT_CONTINUED = (
    "T: .ann text field continues on the next line(s) (the span crosses a line break; matched with \\r ignored)"
)
TEXT_CR = "T: .ann text field lacks the \\r of a CRLF in the .txt (matched with \\r ignored)"
TEXT_LINE_BREAK = "T: .ann text field has a space where the .txt has a line break (matched)"
EMPTY_SPAN = "T: empty or whitespace-only span"
DUPLICATE_SPAN = "T: same fragments and label as another T line in the file (merged)"
SHARED_SPAN = (
    "T: same covering span and label as another T once trimmed, expanded or covered "
    "(one span; both kept as fragment variants)"
)
EVENT_WITHOUT_ARGUMENTS = "E: event without arguments (trigger kept as entity)"
ROLE_NUMBER = "E: numbered role suffix stripped (e.g. Type2 -> Type)"
EQUIVALENCE = "*: equivalence -> relations between consecutive members"
HEAD_SWAP = "R: arguments swapped so the head has a head type"
ARG2_FIRST = "R: Arg2 written before Arg1 (read by name: Arg1 is the head)"
OTHER_ARG_NAMES = "R: argument names other than Arg1 and Arg2 (read in the order written: the first is the head)"
NOTE = "#: annotator note (not converted)"
NORMALIZATION = "N: normalization (not converted)"
ATTRIBUTE_DUPLICATE = "A: same attribute and value on the same span (merged)"
ATTRIBUTE_CONFLICT = "A: other value for an attribute already set on the span (first kept)"
TXT_WITHOUT_ANN = "document: .txt without .ann (no annotations, skipped)"
OTHER_SPLIT = "document: not listed in this split of the --splits file (skipped here)"
ANN_BOM = "document: byte order mark at the start of the .ann ignored"

# What each kind of line should look like, for error messages.
LINE_FORMS = {
    "T": "T1<TAB>TYPE START END<TAB>TEXT (discontinuous: TYPE 0 5;9 14)",
    "R": "R1<TAB>TYPE Arg1:T1 Arg2:T2",
    "E": "E1<TAB>TYPE:T1 ROLE:T2 ...",
    "A": "A1<TAB>NAME T1 [VALUE]",
    "M": "M1<TAB>NAME T1 [VALUE]",
    "*": "*<TAB>TYPE T1 T2 ...",
    "#": "#1<TAB>AnnotatorNotes T1<TAB>TEXT",
    "N": "N1<TAB>Reference T1 DB:ID<TAB>TEXT",
}


def line_form(kind: str) -> str:
    return LINE_FORMS.get(kind, "ID<TAB>... (ids start with T, R, E, A, M, N, # or are *)")


def duplicate_relation(kind: str) -> str:
    return f"{kind}: same relation as another line in the file (merged)"


def shared_relation(kind: str) -> str:
    return (
        f"{kind}: same spans and label as another relation once its arguments are spans "
        "(one relation in the Doc; both lines kept for export)"
    )


def self_relation(kind: str, same_annotation: bool) -> str:
    """A relation whose head and tail are one span and label: kept, and counted with why."""
    if same_annotation:
        return f"{kind}: both arguments are the same annotation in the file (kept as a self-relation)"
    return (
        f"{kind}: the two arguments are different annotations on one covering span and label "
        "(kept as a self-relation of that span)"
    )


def argument_not_converted(kind: str) -> str:
    return f"{kind}: an argument was not converted"
