"""doc._.relations: storage in user_data, and survival through spaCy's serialisation paths."""
from __future__ import annotations

from typing import List

import pytest
import spacy
from spacy.tokens import Doc, DocBin

from spacy_softprompt import Relation, RelationAlignmentError, set_concepts, set_relations


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def annotated(nlp, text: str, spans: List[tuple], rels: List[tuple]) -> Doc:
    """A Doc with labelled spans ``(text, label)`` and relations ``(head i, tail i, label, score)``."""
    doc = nlp.make_doc(text)
    made = []
    for mention, label in spans:
        start = text.index(mention)
        made.append(doc.char_span(start, start + len(mention), label=label))
    set_concepts(doc, made)
    set_relations(doc, [Relation(made[h], made[t], label, score) for h, t, label, score in rels])
    return doc


def summary(doc: Doc) -> List[tuple]:
    return [(r.head.text, r.head.label_, r.tail.text, r.tail.label_, r.label, r.score) for r in doc._.relations]


@pytest.fixture
def doc(nlp) -> Doc:
    return annotated(
        nlp,
        "Warfarin 5 mg caused bleeding and a rash.",
        [("Warfarin", "Drug"), ("5 mg", "Dosage"), ("bleeding", "ADE"), ("rash", "ADE")],
        [(0, 2, "Drug-AE", 0.9), (0, 1, "Drug-Dose", 1.0), (0, 3, "Drug-AE", 0.5)],
    )


EXPECTED = [
    ("Warfarin", "Drug", "5 mg", "Dosage", "Drug-Dose", 1.0),
    ("Warfarin", "Drug", "bleeding", "ADE", "Drug-AE", 0.9),
    ("Warfarin", "Drug", "rash", "ADE", "Drug-AE", 0.5),
]


def test_relations_read_back(doc):
    assert sorted(summary(doc), key=lambda r: r[2]) == EXPECTED


def test_relations_ordered_by_head(nlp):
    doc = annotated(
        nlp,
        "Rash after aspirin; HIT after heparin.",
        [("Rash", "ADE"), ("aspirin", "Drug"), ("HIT", "ADE"), ("heparin", "Drug")],
        [(3, 2, "Drug-AE", 1.0), (1, 0, "Drug-AE", 1.0)],
    )
    assert [r.head.text for r in doc._.relations] == ["aspirin", "heparin"]


def test_duplicates_merge_keeping_the_best_score(doc):
    head, tail = doc.spans["softprompt"][0], doc.spans["softprompt"][2]
    set_relations(doc, [Relation(head, tail, "Drug-AE", 0.2), Relation(head, tail, "Drug-AE", 0.7)])
    assert summary(doc) == [("Warfarin", "Drug", "bleeding", "ADE", "Drug-AE", 0.7)]


def test_docbin_round_trip(nlp, doc):
    data = DocBin(store_user_data=True, docs=[doc]).to_bytes()
    (restored,) = DocBin().from_bytes(data).get_docs(nlp.vocab)
    assert summary(restored) == summary(doc)


def test_doc_bytes_round_trip(nlp, doc):
    doc._.doc_id = "42-0"
    restored = Doc(nlp.vocab).from_bytes(doc.to_bytes())
    assert summary(restored) == summary(doc)
    assert restored._.doc_id == "42-0"


def test_from_docs_shifts_relations_with_their_doc(nlp, doc):
    first = annotated(nlp, "Heparin caused HIT.", [("Heparin", "Drug"), ("HIT", "ADE")], [(0, 1, "Drug-AE", 1.0)])
    joined = Doc.from_docs([first, doc])
    assert sorted(summary(joined)) == sorted(summary(first) + summary(doc))
    shift = len(first.text) + 1
    assert {r.tail.start_char - shift for r in joined._.relations if r.head.text == "Warfarin"} == {
        r.tail.start_char for r in doc._.relations
    }


def test_stored_text_mismatch_raises(nlp, doc):
    other = nlp.make_doc("Aspirin 5 mg caused fevers and a cough.")
    other.user_data.update(doc.user_data)
    with pytest.raises(RelationAlignmentError, match="does not match the document text"):
        other._.relations


def test_retokenized_text_raises(nlp, doc):
    words = ["Warfarin 5", "mg caused bleeding and a rash", "."]
    other = Doc(nlp.vocab, words=words, spaces=[True, False, False])
    assert other.text == doc.text
    other.user_data.update(doc.user_data)
    with pytest.raises(RelationAlignmentError, match="token boundaries"):
        other._.relations


def test_spans_must_be_labelled_and_from_this_doc(nlp, doc):
    other = nlp.make_doc(doc.text)
    with pytest.raises(ValueError, match="another Doc"):
        set_relations(other, [Relation(doc[0:1], doc[2:3], "Drug-Dose")])
    with pytest.raises(ValueError, match="labelled"):
        set_relations(doc, [Relation(doc[0:1], doc[2:3], "Drug-Dose")])
