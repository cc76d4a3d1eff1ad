"""brat -> Docs (-> DocBin) -> brat gives back the same annotations and byte-identical texts.

Annotations are compared as sets parsed here, independently of the package: a T
line is its label and fragments, an E line its type, trigger and (role,
argument) pairs, R its type and named arguments, ``*`` its type and members, A
its name, target and value; ids are replaced by what they point at, so the
writer may renumber them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
import spacy
from spacy.tokens import Doc, DocBin

import spacy_softprompt  # noqa: F401  (registers the extensions)
from spacy_softprompt import Relation
from spacy_softprompt.corpora import brat
from spacy_softprompt.corpora.brat import read_brat, write_brat

from conftest import SHARED_DATA, require_shared


def annotation_set(ann: str) -> Set[tuple]:
    """The annotations of a .ann as comparable values (ids replaced by what they point at)."""
    rows = [line[:-1] if line.endswith("\r") else line for line in ann.lstrip("\ufeff").split("\n")]
    rows_split = [r.split("\t") for r in rows if r.strip() and r[0] in "TERAM*"]
    textbound: Dict[str, tuple] = {}
    events: Dict[str, Tuple[str, str, List[Tuple[str, str]]]] = {}
    for row in rows_split:
        if row[0].startswith("T"):
            label, offsets = row[1].split(" ", 1)
            fragments = tuple(tuple(int(x) for x in f.split()) for f in offsets.split(";"))
            textbound[row[0]] = ("T", label, fragments)
        elif row[0].startswith("E"):
            fields = row[1].split()
            event_type, trigger = fields[0].split(":")
            events[row[0]] = (event_type, trigger, [tuple(f.split(":")) for f in fields[1:]])

    def ident(ref: str) -> tuple:
        if ref in textbound:
            return textbound[ref]
        event_type, trigger, arguments = events[ref]
        return ("E", event_type, textbound[trigger], tuple(sorted((role, ident(r)) for role, r in arguments)))

    found = set(textbound.values()) | {ident(e) for e in events}
    for row in rows_split:
        kind, fields = row[0][0], row[1].split()
        if kind == "R":
            found.add(("R", fields[0], *((f.split(":")[0], ident(f.split(":")[1])) for f in fields[1:])))
        elif kind == "*":
            found.add(("*", fields[0], frozenset(ident(ref) for ref in fields[1:])))
        elif kind in "AM":
            found.add(("A", fields[0], ident(fields[1]), fields[2] if len(fields) > 2 else None))
    return found


def through_docbin(docs: List[Doc], nlp) -> List[Doc]:
    """What ``convert`` writes and ``export-brat`` reads back."""
    data = DocBin(store_user_data=True, docs=docs).to_bytes()
    return list(DocBin(store_user_data=True).from_bytes(data).get_docs(nlp.vocab))


def round_trip_differences(source: Path, out: Path, nlp) -> Tuple[int, List[str]]:
    """Read ``source``, pass the Docs through a DocBin, write them to ``out``: the documents whose
    annotation set or text changed."""
    docs, summary = read_brat(source, nlp)
    assert summary.problems == []
    differ = []
    for doc in through_docbin(docs, nlp):
        name = doc._.doc_id
        write_brat(doc, out / f"{name}.ann", txt_path=out / f"{name}.txt")
        before = annotation_set((source / f"{name}.ann").read_bytes().decode("utf-8"))
        after = annotation_set((out / f"{name}.ann").read_bytes().decode("utf-8"))
        same_text = (source / f"{name}.txt").read_bytes() == (out / f"{name}.txt").read_bytes()
        if before != after or not same_text:
            differ.append(f"{name}: lost {sorted(before - after, key=str)[:2]}, new {sorted(after - before, key=str)[:2]}")
    return len(docs), differ


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def sample(source: Path, folder: Path, every: int) -> Path:
    """Every ``every``-th document, plus each one with a discontinuous span, copied to ``folder``
    (byte for byte); the whole corpus when ``every`` is 1."""
    if every == 1:
        return source
    for index, ann in enumerate(sorted(source.rglob("*.ann"))):
        data = ann.read_bytes()
        if index % every == 0 or b";" in data:
            target = folder / ann.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.with_suffix(".txt").write_bytes(ann.with_suffix(".txt").read_bytes())
    return folder


# The whole of MACCROBAT takes ~10 s here: a sample by default, all of it with BRAT_FULL_ROUND_TRIP=1.
EVERY = 1 if os.environ.get("BRAT_FULL_ROUND_TRIP") else 4


@pytest.mark.parametrize("name,documents", [("sdoh-mtsamples", 361), ("maccrobat", 200)])
def test_shared_corpus_round_trip_changes_nothing(tmp_path, nlp, name, documents):
    source = require_shared(SHARED_DATA / name)
    every = EVERY if name == "maccrobat" else 1
    count, differ = round_trip_differences(sample(source, tmp_path / "in", every), tmp_path / "out", nlp)
    assert count == documents if every == 1 else count >= documents // every
    assert differ == []


def write_pair(folder: Path, name: str, text: str, ann: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, content in ((".txt", text), (".ann", ann)):
        with (folder / f"{name}{suffix}").open("w", encoding="utf-8", newline="") as out:
            out.write(content)


TEXT = "Hepatitis B and C were ruled out.\r\nShe smokes 2 packs daily,\r\nno alcohol.\r\n"
ANN = (
    "T1\tDisease 0 9;16 17\tHepatitis C\n"
    "T2\tDisease 0 11\tHepatitis B\n"
    "T3\tDisease 0 9;16 17\tHepatitis C\n"  # identical in the file: merged
    "T4\tDisease 0 17\tHepatitis B and C\n"
    "T5\tTobacco 39 45\tsmokes\n"
    "T6\tAmount 46 53\t2 packs\n"
    "T7\tFrequency 54 59\tdaily\n"
    "T8\tAlcohol 65 72\talcohol\n"
    "T9\tStatusTime 62 64\tno\n"
    "T10\tSpan 54 64\tdaily,\n"  # crosses a CRLF: the text field continues on the next line
    "no\n"
    "E1\tTobacco:T5 Amount:T6 Frequency2:T7\n"
    "E2\tAlcohol:T8 Status:T9 \n"
    "E3\tTobacco:T5\n"  # a second event on one trigger
    "R1\tSame Arg1:T1 Arg2:T4\t\n"  # two annotations on one covering span: a self-relation
    "R2\tAfter Arg1:E1 Arg2:E2\n"
    "*\tOVERLAP T1 T2 E2\n"
    "A1\tNegated T9\n"
    "A2\tPOLARITY E2 NEG\n"
    "#1\tAnnotatorNotes T1\tcheck\n"
)


def test_hand_made_round_trip_keeps_every_line_kind(tmp_path, nlp):
    write_pair(tmp_path / "in", "doc", TEXT, ANN)
    docs, summary = read_brat(tmp_path / "in", nlp)
    doc = docs[0]
    disease = [s for s in doc.spans["softprompt"] if s.label_ == "Disease"]
    assert [(s.text, s._.fragments) for s in disease] == [
        ("Hepatitis B", [[(0, 11)]]),
        ("Hepatitis B and C", [[(0, 9), (16, 17)], [(0, 17)]]),  # never merged
    ]
    assert summary.not_converted == {brat.DUPLICATE_SPAN: 1, brat.NOTE: 1}
    assert summary.adjusted[brat.SHARED_SPAN] == 1
    assert summary.adjusted[brat.self_relation("R", False)] == 1
    assert summary.adjusted[brat.TEXT_CONTINUED] == 1
    assert summary.adjusted[brat.ROLE_NUMBER] == 1
    _, differ = round_trip_differences(tmp_path / "in", tmp_path / "out", nlp)
    assert differ == []
    written = (tmp_path / "out" / "doc.ann").read_text(encoding="utf-8")
    assert "\tDisease 0 9;16 17\tHepatitis C\n" in written
    assert "*\tOVERLAP " in written and "Frequency2:" in written
    assert "\tSpan 54 64\tdaily, no\n" in written  # one line: the line break written as a space
    back, again = read_brat(tmp_path / "out", nlp, text_check="strict")
    assert again.adjusted[brat.TEXT_LINE_BREAK] == 1 and again.problems == []


def test_fragments_and_kept_lines_survive_from_docs(tmp_path, nlp):
    write_pair(tmp_path / "in", "doc", TEXT, ANN)
    doc = read_brat(tmp_path / "in", nlp)[0][0]
    first = nlp.make_doc("Nothing here.")
    joined = Doc.from_docs([first, doc])
    shift = len(first.text) + 1
    spans = [s for s in joined.spans["softprompt"] if s.label_ == "Disease"]
    assert spans[1]._.fragments == [[(shift, shift + 9), (shift + 16, shift + 17)], [(shift, shift + 17)]]
    write_brat(joined, tmp_path / "joined.ann")
    expected = {
        ("T", label, tuple((s + shift, e + shift) for s, e in fragments)) if kind == "T" else None
        for kind, label, fragments in [a for a in annotation_set(ANN) if a[0] == "T"]
    }
    found = annotation_set((tmp_path / "joined.ann").read_text(encoding="utf-8"))
    assert expected <= found
    assert len([a for a in found if a[0] == "E"]) == 3 and any(a[0] == "*" for a in found)


def test_edited_relations_are_written_from_the_doc(tmp_path, nlp):
    """Kept lines are written only while they describe the Doc; after an edit, the Doc wins."""
    write_pair(tmp_path / "in", "doc", TEXT, ANN)
    doc = read_brat(tmp_path / "in", nlp)[0][0]
    spans = {s.text: s for s in doc.spans["softprompt"]}
    doc._.relations = [Relation(spans["smokes"], spans["daily"], "Frequency")]
    write_brat(doc, tmp_path / "edited.ann")
    found = annotation_set((tmp_path / "edited.ann").read_text(encoding="utf-8"))
    assert [a for a in found if a[0] not in "TA"] == [
        ("R", "Frequency", ("Arg1", ("T", "Tobacco", ((39, 45),))), ("Arg2", ("T", "Frequency", ((54, 59),))))
    ]
    assert ("T", "Disease", ((0, 9), (16, 17))) in found  # fragments are still written
    assert ("A", "POLARITY", ("T", "Alcohol", ((65, 72),)), "NEG") in found  # attributes from the spans
