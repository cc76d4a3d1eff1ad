"""brat reader and writer: small hand-made files for each rule, and the shared corpora,
whose expected counts come from a plain parse of the raw .ann lines written here."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import spacy
from spacy.tokens import Doc

import spacy_softprompt  # noqa: F401  (registers the extensions)
from spacy_softprompt import Relation, set_concepts, set_relations, set_span_attributes
from spacy_softprompt.corpora import brat
from spacy_softprompt.corpora.brat import read_brat, write_brat
from spacy_softprompt.corpora.summary import CorpusFormatError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = ["maccrobat", "sdoh-mtsamples/train", "sdoh-mtsamples/dev", "sdoh-mtsamples/test"]


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def write_pair(folder: Path, name: str, text: str, ann: str) -> Path:
    """A .txt/.ann pair written byte for byte (no newline translation); returns the .ann path."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix, content in ((".txt", text), (".ann", ann)):
        with (folder / f"{name}{suffix}").open("w", encoding="utf-8", newline="") as out:
            out.write(content)
    return folder / f"{name}.ann"


def read_one(tmp_path: Path, nlp, text: str, ann: str, **kwargs) -> Tuple[Doc, "brat.ConversionSummary"]:
    docs, summary = read_brat(write_pair(tmp_path, "doc", text, ann), nlp, **kwargs)
    assert len(docs) == 1
    return docs[0], summary


def entity_keys(doc: Doc) -> List[Tuple[str, str]]:
    return [(span.text, span.label_) for span in doc.spans["softprompt"]]


def relation_keys(doc: Doc) -> List[Tuple[str, str, str]]:
    return sorted((r.head.text, r.label, r.tail.text) for r in doc._.relations)


# --- rules, on small hand-made files -------------------------------------------------


def test_discontinuous_span_keeps_fragments_on_its_covering_span(tmp_path, nlp):
    text = "Hepatitis B and C were ruled out."
    doc, summary = read_one(tmp_path, nlp, text, "T1\tDisease 0 9;16 17\tHepatitis C\n")
    assert entity_keys(doc) == [("Hepatitis B and C", "Disease")]
    assert doc.spans["softprompt"][0]._.fragments == [[(0, 9), (16, 17)]]
    assert summary.adjusted == {brat.DISCONTINUOUS: 1}
    assert summary.entities == {"Disease": 1}


def test_crlf_counts_as_two_characters(tmp_path, nlp):
    text = "Seen today.\r\nAspirin caused a rash.\r\n"
    ann = (
        "\ufeffT1\tDrug 13 20\tAspirin\r\nT2\tADE 30 34\trash\r\nR1\tCauses Arg1:T1 Arg2:T2\r\n"  # BOM, CRLF
    )
    doc, summary = read_one(tmp_path, nlp, text, ann, text_check="strict")
    assert doc.text == text
    assert entity_keys(doc) == [("Aspirin", "Drug"), ("rash", "ADE")]
    assert relation_keys(doc) == [("Aspirin", "Causes", "rash")]
    assert summary.adjusted == {brat.ANN_BOM: 1} and not summary.not_converted


def test_several_labels_on_one_span(tmp_path, nlp):
    text = "History of diabetes."
    ann = "T1\tHistory 11 19\tdiabetes\nT2\tDisease_disorder 11 19\tdiabetes\n"
    doc, summary = read_one(tmp_path, nlp, text, ann)
    assert sorted(entity_keys(doc)) == [("diabetes", "Disease_disorder"), ("diabetes", "History")]
    assert len(doc.ents) == 1
    assert summary.entities == {"History": 1, "Disease_disorder": 1}


def test_relation_arguments_that_are_event_ids_use_the_trigger(tmp_path, nlp):
    text = "Fever caused by pneumonia."
    ann = (
        "T1\tSign_symptom 0 5\tFever\nE1\tSign_symptom:T1 \n"
        "T2\tDisease_disorder 16 25\tpneumonia\nE2\tDisease_disorder:T2 \n"
        "R1\tCAUSE Arg1:E2 Arg2:E1\t\n"
        "*\tOVERLAP E1 E2\n"
    )
    doc, summary = read_one(tmp_path, nlp, text, ann)
    assert relation_keys(doc) == [("Fever", "OVERLAP", "pneumonia"), ("pneumonia", "CAUSE", "Fever")]
    assert summary.adjusted == {brat.EVENT_WITHOUT_ARGUMENTS: 2, brat.EQUIVALENCE: 1}


def test_event_arguments_become_relations_from_the_trigger(tmp_path, nlp):
    text = "He smokes cigarettes and cigars daily."
    ann = (
        "T1\tTobacco 3 9\tsmokes\nT2\tStatusTime 3 9\tsmokes\nT3\tType 10 20\tcigarettes\n"
        "T4\tType 25 31\tcigars\nT5\tFrequency 32 37\tdaily\n"
        "E1\tTobacco:T1 Status:T2 Type:T3 Type2:T4 Frequency:T5\n"
        "A1\tStatusTimeVal T2 current\n"
    )
    doc, summary = read_one(tmp_path, nlp, text, ann)
    assert relation_keys(doc) == [
        ("smokes", "Frequency", "daily"),
        ("smokes", "Status", "smokes"),
        ("smokes", "Type", "cigarettes"),
        ("smokes", "Type", "cigars"),
    ]
    assert {r.head.label_ for r in doc._.relations} == {"Tobacco"}
    assert summary.adjusted == {brat.ROLE_NUMBER: 1}
    status = [s for s in doc.spans["softprompt"] if s.label_ == "StatusTime"][0]
    assert status._.attributes == {"StatusTimeVal": "current"}
    assert summary.attributes == {"StatusTimeVal=current": 1}


def test_equivalence_links_consecutive_members(tmp_path, nlp):
    text = "rash, fever and cough"
    ann = "T1\tS 0 4\trash\nT2\tS 6 11\tfever\nT3\tS 16 21\tcough\n*\tOVERLAP T1 T2 T3\n"
    doc, summary = read_one(tmp_path, nlp, text, ann)
    assert relation_keys(doc) == [("fever", "OVERLAP", "cough"), ("rash", "OVERLAP", "fever")]
    assert summary.relations == {"OVERLAP": 2}


def test_attributes_binary_valued_and_on_events(tmp_path, nlp):
    text = "No fever, rising pain."
    ann = (
        "T1\tSign_symptom 3 8\tfever\nE1\tSign_symptom:T1 \nT2\tSign_symptom 17 21\tpain\n"
        "A1\tNegated T1\nA2\tPOLARITY E1 NEG\nA3\tTREND T2 INC\n"
    )
    doc, summary = read_one(tmp_path, nlp, text, ann)
    by_text = {s.text: s._.attributes for s in doc.spans["softprompt"]}
    assert by_text == {"fever": {"Negated": "true", "POLARITY": "NEG"}, "pain": {"TREND": "INC"}}
    assert summary.attributes == {"Negated=true": 1, "POLARITY=NEG": 1, "TREND=INC": 1}


def test_notes_and_normalizations_are_counted_not_converted(tmp_path, nlp):
    text = "Aspirin"
    ann = "T1\tDrug 0 7\tAspirin\n#1\tAnnotatorNotes T1\tcheck this\nN1\tReference T1 RxNorm:1191\tAspirin\n"
    doc, summary = read_one(tmp_path, nlp, text, ann)
    assert summary.not_converted == {brat.NOTE: 1, brat.NORMALIZATION: 1}
    assert entity_keys(doc) == [("Aspirin", "Drug")]


def test_alignment_trims_expands_and_skips_whitespace(tmp_path, nlp):
    text = "A nonsmoker.\n\nDone."
    ann = "T1\tStatus 2 5\tnon\nT2\tTobacco 5 11\tsmoker\nT3\tX 11 14\t.\n\n\nT4\tY 12 14\t\n\n\n"
    doc, summary = read_one(tmp_path, nlp, text, ann)
    assert entity_keys(doc) == [("nonsmoker", "Status"), ("nonsmoker", "Tobacco"), (".", "X")]
    # "." is written for ".\n\n" (T3) and "" for "\n\n" (T4): the whitespace is in the .txt
    assert summary.adjusted == {brat.EXPANDED: 2, brat.TRIMMED: 1, brat.TEXT_TXT_TRAILING_WS: 2}
    assert summary.not_converted == {brat.EMPTY_SPAN: 1}


def test_duplicates_are_merged_and_counted(tmp_path, nlp):
    text = "Aspirin caused a rash."
    ann = (
        "T1\tDrug 0 7\tAspirin\nT2\tDrug 0 7\tAspirin\nT3\tADE 17 21\trash\n"
        "R1\tCauses Arg1:T1 Arg2:T3\nR2\tCauses Arg1:T2 Arg2:T3\n"
        "A1\tCertain T1 yes\nA2\tCertain T2 yes\nA3\tCertain T2 no\n"
    )
    doc, summary = read_one(tmp_path, nlp, text, ann)
    assert entity_keys(doc) == [("Aspirin", "Drug"), ("rash", "ADE")]
    assert relation_keys(doc) == [("Aspirin", "Causes", "rash")]
    assert summary.not_converted == {
        brat.DUPLICATE_SPAN: 1,
        brat.duplicate_relation("R"): 1,
        brat.ATTRIBUTE_DUPLICATE: 1,
        brat.ATTRIBUTE_CONFLICT: 1,
    }
    assert doc.spans["softprompt"][0]._.attributes == {"Certain": "yes"}


def test_label_and_relation_maps_and_head_types(tmp_path, nlp):
    text = "Nausea after 5 mg of Aspirin."
    ann = (
        "T1\tADE 0 6\tNausea\nT2\tDosage 13 17\t5 mg\nT3\tDrug 21 28\tAspirin\n"
        "R1\tADE-Drug Arg1:T1 Arg2:T3\nR2\tDosage-Drug Arg1:T2 Arg2:T3\n"
    )
    doc, summary = read_one(
        tmp_path,
        nlp,
        text,
        ann,
        label_map={"Drug": "DRUG"},
        relation_map={"ADE-Drug": "Drug-ADE"},
        head_types={"DRUG"},
    )
    assert relation_keys(doc) == [("Aspirin", "Dosage-Drug", "5 mg"), ("Aspirin", "Drug-ADE", "Nausea")]
    assert summary.entities == {"ADE": 1, "Dosage": 1, "DRUG": 1}
    assert summary.relations == {"Drug-ADE": 1, "Dosage-Drug": 1}
    assert summary.adjusted == {brat.HEAD_SWAP: 2}


def test_text_check_modes(tmp_path, nlp):
    text = "He lives in the State of Ohio."
    corrupted = "T1\tLocation 16 29\tStatus of Ohio\n"  # the SDoH search-and-replace
    shifted = "T1\tLocation 17 30\tState of Ohio\n"  # offsets one off
    doc, summary = read_one(tmp_path, nlp, text, corrupted)
    assert entity_keys(doc) == [("State of Ohio", "Location")]
    assert summary.adjusted == {brat.TEXT_DIFFERS: 1}
    with pytest.raises(CorpusFormatError, match="text mismatch"):
        read_one(tmp_path, nlp, text, corrupted, text_check="strict")
    with pytest.raises(CorpusFormatError, match="text mismatch"):
        read_one(tmp_path, nlp, text, shifted)
    with pytest.raises(CorpusFormatError, match="text mismatch"):  # wrong end
        read_one(tmp_path, nlp, text, "T1\tLocation 16 28\tState of Ohio\n")
    doc, summary = read_one(tmp_path, nlp, text, shifted, text_check="offsets")
    assert entity_keys(doc) == [("State of Ohio.", "Location")]  # trusted, then expanded to tokens


MALFORMED = [
    ("T1\tDrug 0 7\tAspirin\nT2\tADE 30 40\trash\n", 2, "offset beyond text"),
    ("T1\tDrug 0 7\tAspirin\nT2\tADE 17 21\track\n", 2, "text mismatch"),
    ("T1\tDrug 0 7\tAspirin\nR1\tCauses Arg1:T1 Arg2:T9\n", 2, "unknown id"),
    ("T1\tDrug 0 7\tAspirin\nA1\tNegated E4\n", 2, "unknown id"),
    ("T1\tDrug 0 7\tAspirin\nE1\tDrug:T1 Type:T7\n", 2, "unknown id"),
    ("T1\tDrug 0 7\tAspirin\nT2\tADE 17 x\trash\n", 2, "broken T line"),
    ("T1\tDrug 0 7\tAspirin\nR1 Causes Arg1:T1 Arg2:T1\n", 2, "broken line"),
    ("T1\tDrug 0 7\tAspirin\nR1\tCauses Arg1:T1\n", 2, "broken R line"),
    ("T1\tDrug 0 7\tAspirin\nQ1\tsomething T1\n", 2, "unknown annotation line type"),
    ("T1\tDrug 0 7\tAspirin\nT1\tDrug 0 7\tAspirin\n", 2, "duplicate id"),
]


@pytest.mark.parametrize("ann,line,message", MALFORMED)
def test_malformed_input_names_file_and_line(tmp_path, nlp, ann, line, message):
    path = write_pair(tmp_path, "bad", "Aspirin caused a rash.", ann)
    with pytest.raises(CorpusFormatError, match=message) as info:
        read_brat(path, nlp)
    assert (info.value.path, info.value.line) == (str(path), line)
    assert str(info.value).startswith(f"{path}:{line}: ")
    docs, summary = read_brat(path, nlp, lenient=True)
    assert len(summary.problems) == 1 and summary.problems[0].startswith(f"{path}:{line}: {message}")
    assert summary.not_converted == {f"malformed input: {message}": 1}
    assert ("Aspirin", "Drug") in entity_keys(docs[0])


def test_lenient_counts_lost_relations(tmp_path, nlp):
    ann = "T1\tDrug 0 7\tAspirin\nT2\tADE 30 40\trash\nR1\tCauses Arg1:T1 Arg2:T2\n"
    path = write_pair(tmp_path, "bad", "Aspirin caused a rash.", ann)
    _, summary = read_brat(path, nlp, lenient=True)
    assert summary.not_converted == {
        "malformed input: offset beyond text": 1,
        brat.argument_not_converted("R"): 1,
    }


def test_folder_doc_ids_and_lone_files(tmp_path, nlp):
    write_pair(tmp_path / "b", "two", "Aspirin", "T1\tDrug 0 7\tAspirin\n")
    write_pair(tmp_path / "a", "one", "Aspirin", "")
    (tmp_path / "README.txt").write_text("not a document")
    (tmp_path / "orphan.ann").write_text("T1\tDrug 0 7\tAspirin\n")
    with pytest.raises(CorpusFormatError, match="no .txt beside"):
        read_brat(tmp_path, nlp)
    docs, summary = read_brat(tmp_path, nlp, lenient=True)
    assert [d._.doc_id for d in docs] == ["a/one", "b/two"]
    assert summary.not_converted[brat.TXT_WITHOUT_ANN] == 1
    assert summary.documents == 2
    vocab_docs, _ = read_brat(tmp_path / "b", nlp.vocab)
    assert entity_keys(vocab_docs[0]) == [("Aspirin", "Drug")]


def test_write_brat_lines_and_options(tmp_path, nlp):
    text = "Nausea\r\nafter Aspirin."
    doc = nlp.make_doc(text)
    ade, drug = doc.char_span(0, 13, label="ADE"), doc.char_span(14, 21, label="Drug")
    set_concepts(doc, [ade, drug])
    set_relations(doc, [Relation(drug, ade, "Drug-ADE")])
    set_span_attributes(drug, {"Certain": "true", "Dose": "low"})
    write_brat(
        doc,
        tmp_path / "x.ann",
        txt_path=tmp_path / "x.txt",
        relation_map={"Drug-ADE": "ADE-Drug"},
        tail_first=True,
    )
    assert (tmp_path / "x.txt").read_bytes() == text.encode("utf-8")
    assert (tmp_path / "x.ann").read_text(encoding="utf-8").split("\n") == [
        "T1\tADE 0 6;8 13\tNausea after",  # a span crossing a line break is written in fragments
        "T2\tDrug 14 21\tAspirin",
        "R1\tADE-Drug Arg1:T1 Arg2:T2",
        "A1\tCertain T2",
        "A2\tDose T2 low",
        "",
    ]
    back, summary = read_brat(
        tmp_path / "x.ann", nlp, head_types={"Drug"}, relation_map={"ADE-Drug": "Drug-ADE"}
    )
    assert entity_keys(back[0]) == entity_keys(doc)
    assert relation_keys(back[0]) == relation_keys(doc)
    assert summary.adjusted == {brat.DISCONTINUOUS: 1, brat.HEAD_SWAP: 1}


def test_write_brat_falls_back_to_ents(tmp_path, nlp):
    doc = nlp.make_doc("Aspirin helps.")
    doc.ents = [doc.char_span(0, 7, label="Drug")]
    write_brat(doc, tmp_path / "y.ann")
    assert (tmp_path / "y.ann").read_text(encoding="utf-8") == "T1\tDrug 0 7\tAspirin\n"


# --- the shared corpora ----------------------------------------------------------------


@dataclass
class Raw:
    """What the raw files hold, and what the reader's rules must make of it."""

    documents: int = 0
    t_lines: int = 0
    relation_candidates: int = 0  # R lines + event arguments + (members - 1) per equivalence
    a_lines: int = 0
    entities: Counter = field(default_factory=Counter)  # distinct (token-aligned span, label)
    relations: Counter = field(default_factory=Counter)  # distinct (head, tail, label)
    attributes: Counter = field(default_factory=Counter)
    adjusted: Counter = field(default_factory=Counter)
    not_converted: Counter = field(default_factory=Counter)


def trimmed(text: str, start: int, end: int) -> Tuple[int, int]:
    inside = text[start:end]
    return start + len(inside) - len(inside.lstrip()), end - len(inside) + len(inside.rstrip())


def widened(starts: List[int], ends: List[int], start: int, end: int) -> Tuple[int, int]:
    """The span of the tokens (given by their start and end offsets) that overlap start..end."""
    return starts[bisect_right(ends, start)], ends[bisect_left(starts, end) - 1]


def eid_of(line: str) -> str:
    return line.split("\t")[0]


def raw_expectations(folder: Path, nlp) -> Raw:
    """Parse every .ann with plain string handling and apply the documented rules."""
    raw = Raw()
    for ann in sorted(folder.rglob("*.ann")):
        raw.documents += 1
        text = ann.with_suffix(".txt").read_bytes().decode("utf-8")
        doc = nlp.make_doc(text)
        starts, ends = [t.idx for t in doc], [t.idx + len(t.text) for t in doc]
        lines = [line for line in ann.read_bytes().decode("utf-8").split("\n") if line.strip()]
        keys: Dict[str, tuple] = {}  # T and E ids -> (start, end, label)
        refs: Dict[str, tuple] = {}  # T ids -> (label, fragments); E ids -> (trigger's ref, index)
        entities, relations, links, attributes = set(), set(), set(), {}
        annotations = set()  # (label, fragments)
        for line in lines:
            if line.startswith("T"):
                raw.t_lines += 1
                tid, type_offsets, ann_text = line.split("\t", 2)
                label, offsets = type_offsets.split(" ", 1)
                fragments = [tuple(int(x) for x in f.split()) for f in offsets.split(";")]
                start, end = fragments[0][0], fragments[-1][1]
                found = " ".join(text[s:e] for s, e in fragments)
                if len(fragments) > 1:
                    raw.adjusted[brat.DISCONTINUOUS] += 1
                if ann_text != found:
                    same = ann_text.rstrip() == found.rstrip()
                    in_ann = ann_text != ann_text.rstrip()
                    trailing = brat.TEXT_TRAILING_WS if in_ann else brat.TEXT_TXT_TRAILING_WS
                    raw.adjusted[trailing if same else brat.TEXT_DIFFERS] += 1
                inner = trimmed(text, start, end)
                aligned = widened(starts, ends, *inner)
                raw.adjusted[brat.TRIMMED] += inner != (start, end)
                raw.adjusted[brat.EXPANDED] += aligned != inner
                keys[tid] = (*aligned, label)
                refs[tid] = (label, tuple(fragments))
                if refs[tid] in annotations:
                    raw.not_converted[brat.DUPLICATE_SPAN] += 1
                elif keys[tid] in entities:
                    raw.adjusted[brat.SHARED_SPAN] += 1
                annotations.add(refs[tid])
                entities.add(keys[tid])
        def mention(ann_id: str) -> tuple:  # an event is on its trigger's annotation
            return refs[ann_id][0] if ann_id.startswith("E") else refs[ann_id]

        on_trigger: Counter = Counter()
        for line in lines:
            if line.startswith("E"):
                eid, fields = line.split("\t")[:2]
                trigger = fields.split()[0].split(":")[1]
                keys[eid] = keys[trigger]
                refs[eid] = (refs[trigger], on_trigger[trigger])
                on_trigger[trigger] += 1
        for line in lines:
            kind, fields = line[0], line.split("\t")[1].split() if "\t" in line else []
            line_links = []
            if kind == "E":
                trigger = fields[0].split(":")[1]
                if len(fields) == 1:
                    raw.adjusted[brat.EVENT_WITHOUT_ARGUMENTS] += 1
                for argument in fields[1:]:
                    role, ref = argument.split(":")
                    if role[-1].isdigit():
                        raw.adjusted[brat.ROLE_NUMBER] += 1
                    line_links.append((eid_of(line), ref, role.rstrip("0123456789")))
            elif kind == "R":
                line_links.append((fields[1].split(":")[1], fields[2].split(":")[1], fields[0]))
            elif kind == "*":
                raw.adjusted[brat.EQUIVALENCE] += 1
                line_links += [(a, b, fields[0]) for a, b in zip(fields[1:], fields[2:])]
            elif kind == "A":
                raw.a_lines += 1
                value = fields[2] if len(fields) == 3 else "true"
                target = (keys[fields[1]], fields[0])
                if target in attributes:
                    raw.not_converted[
                        brat.ATTRIBUTE_DUPLICATE if attributes[target] == value else brat.ATTRIBUTE_CONFLICT
                    ] += 1
                else:
                    attributes[target] = value
                    raw.attributes[f"{fields[0]}={value}"] += 1
            elif kind == "#":
                raw.not_converted[brat.NOTE] += 1
            for head, tail, label in line_links:
                raw.relation_candidates += 1
                key = (keys[head], keys[tail], label)
                if keys[head] == keys[tail]:
                    same = mention(head) == mention(tail)
                    raw.adjusted[brat.self_relation(kind, same)] += 1
                if (refs[head], refs[tail], label) in links:
                    raw.not_converted[brat.duplicate_relation(kind)] += 1
                elif key in relations:
                    raw.adjusted[brat.shared_relation(kind)] += 1
                links.add((refs[head], refs[tail], label))
                relations.add(key)
        raw.entities.update(label for *_, label in entities)
        raw.relations.update(label for *_, label in relations)
    return raw


@pytest.fixture(scope="module")
def corpus(nlp):
    """Each corpus read once: (docs, summary, raw expectations)."""
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA} (it lives outside the project)")
    cache = {}

    def get(name: str):
        if name not in cache:
            docs, summary = read_brat(DATA / name, nlp)
            cache[name] = (docs, summary, raw_expectations(DATA / name, nlp))
        return cache[name]

    return get


@pytest.mark.parametrize("name", CORPORA)
def test_corpus_counts_match_the_raw_files(corpus, name):
    docs, summary, raw = corpus(name)
    assert summary.documents == len(docs) == raw.documents
    assert summary.entities == raw.entities
    assert summary.relations == raw.relations
    assert summary.attributes == raw.attributes
    assert summary.adjusted == raw.adjusted
    assert summary.not_converted == raw.not_converted
    assert summary.problems == []
    # every annotation is accounted for: arrived, or not converted with a reason
    lost = {
        kind: sum(n for reason, n in summary.not_converted.items() if reason.startswith(kind))
        for kind in ("T:", "A:", "R:", "E:", "*:")
    }
    shared = sum(summary.adjusted[brat.shared_relation(kind)] for kind in "RE*")
    assert sum(summary.entities.values()) + summary.adjusted[brat.SHARED_SPAN] + lost["T:"] == raw.t_lines
    assert sum(summary.attributes.values()) + lost["A:"] == raw.a_lines
    assert sum(summary.relations.values()) + lost["R:"] + lost["E:"] + lost["*:"] + shared == raw.relation_candidates
    # ... and what the summary says arrived is what the Docs hold
    assert Counter(s.label_ for d in docs for s in d.spans["softprompt"]) == summary.entities
    assert sum(len(s._.attributes) for d in docs for s in d.spans["softprompt"]) == sum(
        raw.attributes.values()
    )


def test_corpus_known_quirks(corpus):
    """The figures SOURCE.md gives for the quirks this reader has rules for."""
    _, maccrobat, _ = corpus("maccrobat")
    assert maccrobat.adjusted[brat.DISCONTINUOUS] == 44
    assert maccrobat.adjusted[brat.EVENT_WITHOUT_ARGUMENTS] == 14368
    assert maccrobat.adjusted[brat.EQUIVALENCE] == 2023
    assert maccrobat.not_converted[brat.NOTE] == 335
    assert sum(maccrobat.attributes.values()) == 1416
    sdoh = [corpus(f"sdoh-mtsamples/{split}")[1] for split in ("train", "dev", "test")]
    assert sum(s.adjusted[brat.TEXT_DIFFERS] for s in sdoh) == 10  # "State" -> "Status" upstream
    assert sum(s.documents for s in sdoh) == 361


def write_all(docs: List[Doc], folder: Path) -> None:
    for doc in docs:
        write_brat(doc, folder / f"{doc._.doc_id}.ann", txt_path=folder / f"{doc._.doc_id}.txt")


def assert_round_trip(docs: List[Doc], relations: int, tmp_path: Path, nlp) -> None:
    """Docs made without brat (ADE): read -> write -> read keeps texts, spans, labels, attributes
    and relations, and writing them again gives the same files, byte for byte. (Docs read from
    brat: tests/test_brat_roundtrip.py compares annotation sets with the source files.)"""
    write_all(docs, tmp_path / "first")
    back, summary = read_brat(tmp_path / "first", nlp, text_check="strict")
    assert summary.problems == [] and not summary.not_converted
    assert set(summary.adjusted) <= {brat.DISCONTINUOUS}  # spans written around line breaks
    assert sum(summary.relations.values()) == relations
    assert sorted(d._.doc_id for d in back) == sorted(d._.doc_id for d in docs)
    assert spans_and_attributes(back) == spans_and_attributes(docs)
    write_all(back, tmp_path / "second")
    first = sorted(p.relative_to(tmp_path / "first") for p in (tmp_path / "first").rglob("*.*"))
    assert first == sorted(p.relative_to(tmp_path / "second") for p in (tmp_path / "second").rglob("*.*"))
    for path in first:
        assert (tmp_path / "first" / path).read_bytes() == (tmp_path / "second" / path).read_bytes(), path


def spans_and_attributes(docs: List[Doc]) -> Dict[str, tuple]:
    return {
        d._.doc_id: (
            d.text,
            sorted(
                (s.start_char, s.end_char, s.label_, tuple(sorted(s._.attributes.items())))
                for s in d.spans["softprompt"]
            ),
        )
        for d in docs
    }


def test_round_trip_ade(tmp_path, nlp):
    ade = pytest.importorskip("spacy_softprompt.corpora.ade", reason="corpora/ade.py is not written yet")
    if not (DATA / "ade-corpus-v2").is_dir():
        pytest.skip(f"ADE corpus not found at {DATA / 'ade-corpus-v2'}")
    docs, summary = ade.read_ade(DATA / "ade-corpus-v2", nlp)
    assert_round_trip(docs, sum(summary.relations.values()), tmp_path, nlp)


def test_sdoh_doc_ids_are_relative_paths(corpus):
    docs = corpus("sdoh-mtsamples/dev")[0]
    assert all("/" not in d._.doc_id and not d._.doc_id.endswith(".ann") for d in docs)
    assert all(re.fullmatch(r"\d+_.+", d._.doc_id) for d in docs)
