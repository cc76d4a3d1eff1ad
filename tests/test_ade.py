"""ADE corpus v2 reader: counts checked against an independent parse of the raw files."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set

import pytest
import spacy
from spacy.tokens import Doc, DocBin

import spacy_softprompt  # noqa: F401  (registers doc._.relations, doc._.doc_id)
from spacy_softprompt.corpora.ade import (
    CHOSEN_BY_OFFSET,
    CHOSEN_BY_RANK,
    NEG_EXCLUDED,
    read_ade,
)
from spacy_softprompt.corpora.summary import CorpusFormatError

from conftest import SHARED_DATA, require_shared  # noqa: E402

ADE = SHARED_DATA / "ade-corpus-v2"
FILES = {"DRUG-AE.rel": ("Adverse_Effect", "Drug-AE"), "DRUG-DOSE.rel": ("Dosage", "Drug-Dose")}
SPLITS = (None, "train", "dev", "test")


class RawRow(NamedTuple):
    file: str
    pmid: str
    sentence: str
    arg: tuple  # (text, begin, end)
    drug: tuple


def raw_rows() -> List[RawRow]:
    """The .rel files parsed the plain way, with no code from the package."""
    rows = []
    for name in FILES:
        for line in (ADE / name).read_text().splitlines():
            c = line.split("|")
            rows.append(RawRow(name, c[0], c[1], (c[2], int(c[3]), int(c[4])), (c[5], int(c[6]), int(c[7]))))
    return rows


def split_pmids(split: Optional[str]) -> Optional[Set[str]]:
    return None if split is None else set(json.loads((ADE / "splits.json").read_text())[split])


def find_all(text: str, sub: str) -> List[int]:
    return [i for i in range(len(text)) if text.startswith(sub, i)]


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


@pytest.fixture(scope="module")
def corpus(nlp) -> Dict[Optional[str], tuple]:
    return {split: read_ade(require_shared(ADE), nlp, split=split) for split in SPLITS}


@pytest.fixture(scope="module")
def rows(corpus) -> List[RawRow]:
    return raw_rows()


@pytest.mark.parametrize("split", SPLITS)
def test_counts_match_raw_files(corpus, rows, split):
    docs, summary = corpus[split]
    pmids = split_pmids(split)
    mine = [r for r in rows if pmids is None or r.pmid in pmids]

    assert len(docs) == summary.documents == len({(r.pmid, r.sentence) for r in mine})
    mentions = defaultdict(set)
    for r in mine:
        mentions[FILES[r.file][0]].add((r.pmid, r.sentence) + r.arg)
        mentions["Drug"].add((r.pmid, r.sentence) + r.drug)
    for label, unique in mentions.items():
        merged = summary.adjusted[f"{label}: mention merged into another on the same tokens"]
        assert summary.entities[label] + merged == len(unique), label
        assert sum(1 for d in docs for s in d.spans["softprompt"] if s.label_ == label) == summary.entities[label]

    for name, (_, relation) in FILES.items():
        in_split = sum(1 for r in mine if r.file == name)
        merged = summary.adjusted[f"{name}: row merged into an earlier row's relation (same arguments)"]
        assert summary.relations[relation] + merged == in_split
        assert sum(1 for d in docs for rel in d._.relations if rel.label == relation) == summary.relations[relation]
        left_out = sum(n for reason, n in summary.not_converted.items() if reason.startswith(name))
        assert in_split + left_out == sum(1 for r in rows if r.file == name)
    assert summary.problems == []


def test_documented_split_sizes(corpus):
    assert {s: corpus[s][1].documents for s in SPLITS} == {None: 4272, "train": 3453, "dev": 419, "test": 400}


def test_negatives_reported_not_converted(corpus):
    lines = [l for l in (ADE / "ADE-NEG.txt").read_text().splitlines() if l.strip()]
    assert corpus[None][1].not_converted[NEG_EXCLUDED] == len(lines)
    dev = split_pmids("dev")
    assert corpus["dev"][1].not_converted[NEG_EXCLUDED] == sum(1 for l in lines if l.split(" ")[0] in dev)
    neg_reasons = {k: v for k, v in corpus["dev"][1].not_converted.items() if k.startswith("ADE-NEG.txt")}
    assert sum(neg_reasons.values()) == len(lines)


def test_include_negatives(nlp, corpus):
    docs, summary = read_ade(ADE, nlp, split="dev", include_negatives=True)
    dev = split_pmids("dev")
    neg = {tuple(l.split(" NEG ", 1)) for l in (ADE / "ADE-NEG.txt").read_text().splitlines()}
    expected_neg = {p for p in neg if p[0] in dev}
    assert len(docs) == corpus["dev"][1].documents + len(expected_neg)
    empty = [d for d in docs if len(d.spans["softprompt"]) == 0]
    assert {(d._.doc_id.split("-")[0], d.text) for d in empty} == expected_neg
    assert summary.entities == corpus["dev"][1].entities
    # ids are stable: the annotated docs keep the ids they have without negatives
    positives = {d.text: d._.doc_id for d in corpus["dev"][0]}
    assert all(positives[d.text] == d._.doc_id for d in docs if len(d.spans["softprompt"]))


def test_docs_sorted_with_unique_stable_ids(corpus):
    docs = corpus[None][0]
    ids = [d._.doc_id for d in docs]
    assert len(set(ids)) == len(ids)
    keys = [tuple(int(x) for x in i.split("-")) for i in ids]
    assert keys == sorted(keys)
    assert {d._.doc_id for d in corpus["dev"][0]} <= set(ids)


def test_every_row_placed_consistently_with_its_offsets(corpus, rows):
    """Each row's relation exists with the arguments' distance as in the abstract offsets."""
    by_text = {(d._.doc_id.split("-")[0], d.text): d for d in corpus[None][0]}
    unchecked = 0
    for r in rows:
        doc = by_text[(r.pmid, r.sentence)]
        texts = {s.text for s in doc.spans["softprompt"]}
        if r.drug[0] not in texts or r.arg[0] not in texts:
            unchecked += 1  # a mention widened to token boundaries
            continue
        assert any(
            rel.head.text == r.drug[0]
            and rel.tail.text == r.arg[0]
            and rel.tail.start_char - rel.head.start_char == r.arg[1] - r.drug[1]
            for rel in doc._.relations
        ), r
    assert unchecked < 50


def test_repeated_mention_choices_counted(corpus, rows):
    repeated = set()
    for r in rows:
        for label, m in ((FILES[r.file][0], r.arg), ("Drug", r.drug)):
            if len(find_all(r.sentence, m[0])) > 1:
                repeated.add((r.pmid, r.sentence, label) + m)
    adjusted = corpus[None][1].adjusted
    assert adjusted[CHOSEN_BY_OFFSET] + adjusted[CHOSEN_BY_RANK] == len(repeated) > 0
    assert adjusted[CHOSEN_BY_RANK] == 0  # the sentence offset always decided on this corpus


def test_repeated_mention_takes_the_annotated_occurrence(corpus):
    """PMID 18957000: 'heparin' and 'thrombocytopenia' occur twice; only the second of each
    (in 'heparin-induced thrombocytopenia (HIT)') is annotated. Offset rank alone would pick
    the first 'heparin'; the sentence offset fixed by the unique mentions picks the right one."""
    doc = next(
        d for d in corpus[None][0]
        if d._.doc_id.startswith("18957000-") and d.text.startswith("Although heparin-dependent")
    )
    (rel,) = doc._.relations
    assert (rel.head.text, rel.head.start_char) == ("heparin", doc.text.index("heparin-induced"))
    assert (rel.tail.text, rel.tail.start_char) == ("thrombocytopenia", doc.text.index("thrombocytopenia (HIT)"))


def test_repeated_mentions_in_one_sentence_pair_up_by_offset(corpus):
    """PMID 11126885: '... another quinine tablet ... severe thrombocytopenia, ... quinine-induced
    thrombocytopenia.' Rows link quinine#1-thrombocytopenia#1, quinine#2 with both."""
    doc = next(d for d in corpus[None][0] if d.text.startswith("Even after a strict warning, he took"))
    q = find_all(doc.text, "quinine")
    t = find_all(doc.text, "thrombocytopenia")
    assert len(q) == len(t) == 2
    pairs = {(rel.head.start_char, rel.tail.start_char) for rel in doc._.relations}
    assert pairs == {(q[0], t[0]), (q[1], t[0]), (q[1], t[1])}
    assert len(doc.spans["softprompt"]) == 4


def test_label_map_renames(nlp, corpus):
    docs, summary = read_ade(ADE, nlp, split="dev", label_map={"Adverse_Effect": "ADE", "Drug-AE": "ADE-Drug"})
    before = corpus["dev"][1]
    assert summary.entities["ADE"] == before.entities["Adverse_Effect"]
    assert summary.relations["ADE-Drug"] == before.relations["Drug-AE"]
    assert "Adverse_Effect" not in {s.label_ for d in docs for s in d.spans["softprompt"]}
    with pytest.raises(ValueError, match="unknown labels"):
        read_ade(ADE, nlp, label_map={"AE": "x"})


def spans_of(doc: Doc) -> List[tuple]:
    return [(s.start_char, s.end_char, s.label_) for s in doc.spans["softprompt"]]


@pytest.mark.filterwarnings("ignore:.*W101")  # doc._.doc_id cannot be merged, as expected
def test_relations_survive_serialisation(nlp, corpus):
    docs = corpus["dev"][0][:50]
    data = DocBin(store_user_data=True, docs=docs).to_bytes()
    restored = list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    for before, after in zip(docs, restored):
        assert [r.key() for r in after._.relations] == [r.key() for r in before._.relations]
        assert after._.doc_id == before._.doc_id
        assert spans_of(after) == spans_of(before)
        again = Doc(nlp.vocab).from_bytes(before.to_bytes())
        assert [r.key() for r in again._.relations] == [r.key() for r in before._.relations]
    a, b = docs[0], docs[1]
    joined = Doc.from_docs([a, b])
    offset = len(a.text) + 1
    expected = {(r.head.text, r.tail.text, r.label) for r in a._.relations + b._.relations}
    assert {(r.head.text, r.tail.text, r.label) for r in joined._.relations} == expected
    assert {r.head.start_char - offset for r in joined._.relations if r.head.start_char >= offset} == {
        r.head.start_char for r in b._.relations
    }


# --- malformed input -------------------------------------------------------------------

GOOD = "1|Aspirin caused a rash.|rash|18|22|Aspirin|0|7"


def write_corpus(folder: Path, ae_lines: List[str], dose_lines: List[str] = ()) -> Path:
    (folder / "DRUG-AE.rel").write_text("\n".join(ae_lines) + "\n")
    (folder / "DRUG-DOSE.rel").write_text("\n".join(dose_lines) + ("\n" if dose_lines else ""))
    return folder


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("2|Too few columns.|x|1|2", "wrong column count"),
        ("2|Heparin caused HIT.|HIT|x|19|Heparin|0|7", "offset is not an integer"),
        ("2|Heparin caused HIT.|bleeding|16|24|Heparin|0|7", "mention not found in sentence"),
        ("2|Heparin caused HIT.|HIT|16|25|Heparin|0|7", "offsets do not fit the mention"),
    ],
)
def test_malformed_line_names_file_and_line(nlp, tmp_path, bad, reason):
    folder = write_corpus(tmp_path, [GOOD, bad])
    with pytest.raises(CorpusFormatError, match=reason) as info:
        read_ade(folder, nlp)
    assert info.value.line == 2 and info.value.path.endswith("DRUG-AE.rel")
    assert "DRUG-AE.rel:2: " in str(info.value)


def test_lenient_counts_malformed_lines(nlp, tmp_path):
    bad = [
        "2|Too few columns.|x|1|2",
        "3|Heparin caused HIT.|HIT|x|19|Heparin|0|7",
        "4|Heparin caused HIT.|bleeding|16|24|Heparin|0|7",
    ]
    folder = write_corpus(tmp_path, [GOOD] + bad, ["5|Give 5 mg warfarin.|5 mg|5|9|warfarin|10|18"])
    docs, summary = read_ade(folder, nlp, lenient=True)
    assert [p.split(": ")[0] for p in summary.problems] == [f"{folder / 'DRUG-AE.rel'}:{i}" for i in (2, 3, 4)]
    assert sum(n for k, n in summary.not_converted.items() if k.startswith("malformed input")) == 3
    assert summary.relations == Counter({"Drug-AE": 1, "Drug-Dose": 1})
    assert summary.entities == Counter({"Drug": 2, "Adverse_Effect": 1, "Dosage": 1})
    assert [d._.doc_id for d in docs] == ["1-0", "5-0"]  # no Doc for a sentence whose rows all failed


def test_tied_sentence_offset_falls_back_to_offset_rank(nlp, tmp_path):
    """Both strings occur twice and both placements imply a valid sentence start: the vote
    ties, so the k-th smallest offset of a string takes its k-th occurrence."""
    folder = write_corpus(tmp_path, ["7|aspirin rash aspirin rash|rash|108|112|aspirin|100|107"])
    (doc,), summary = read_ade(folder, nlp)
    (rel,) = doc._.relations
    assert (rel.head.start_char, rel.tail.start_char) == (0, 8)
    assert summary.adjusted[CHOSEN_BY_RANK] == 2


def test_split_reports_pmids_in_no_split(nlp, tmp_path):
    folder = write_corpus(tmp_path, [GOOD, "9|Heparin caused HIT.|HIT|16|19|Heparin|0|7"])
    (folder / "splits.json").write_text(json.dumps({"train": ["1"], "dev": [], "test": []}))
    docs, summary = read_ade(folder, nlp, split="train")
    assert [d._.doc_id for d in docs] == ["1-0"]
    assert summary.not_converted == Counter({"DRUG-AE.rel: line of a PMID in no split of splits.json": 1})


def test_a_byte_order_mark_is_not_part_of_the_first_pmid(nlp, tmp_path):
    """A .rel saved with a BOM stopped on 'PMID is not a number' ('\\ufeff1')."""
    folder = write_corpus(tmp_path, [GOOD])
    (folder / "DRUG-AE.rel").write_bytes(b"\xef\xbb\xbf" + (folder / "DRUG-AE.rel").read_bytes())
    docs, _ = read_ade(folder, nlp)
    assert [d._.doc_id for d in docs] == ["1-0"]
