"""doc._.relations: storage in user_data, and survival through spaCy's serialisation paths."""
from __future__ import annotations

from typing import List

import pytest
import spacy
from spacy.tokens import Doc, DocBin

from spacy_softprompt import Relation, RelationAlignmentError, get_relations, set_concepts, set_relations
from spacy_softprompt.relations import RelationAlignmentWarning, concatenate, concept_scores


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


def test_relations_on_another_text_are_dropped_with_a_warning_naming_them(nlp, doc):
    other = nlp.make_doc("Heparin, 5 mg caused bleeding and a rash.")
    other.user_data.update(doc.user_data)
    with pytest.warns(RelationAlignmentWarning, match=r"3 stored relation\(s\) do not match.*'Warfarin' --Drug-AE--> 'rash'"):
        assert other._.relations == ()
    with pytest.raises(RelationAlignmentError, match="does not match the document text"):
        get_relations(other, strict=True)


def test_one_misplaced_relation_does_not_cost_the_others(nlp, doc):
    """Only the relation whose stored tail text differs is dropped; the others read back."""
    key = next(k for k in doc.user_data if isinstance(k, tuple) and k[1] == "softprompt_relation")
    stored = list(doc.user_data[key])
    broken = next(i for i, value in enumerate(stored) if value[5] == "rash")
    stored[broken] = stored[broken][:5] + ("rush",) + stored[broken][6:]
    doc.user_data[key] = stored
    with pytest.warns(RelationAlignmentWarning, match="'Warfarin' --Drug-AE--> 'rush'"):
        assert sorted(summary(doc), key=lambda r: r[2]) == EXPECTED[:2]


def test_retokenized_text_realigns_to_covering_tokens_with_a_warning(nlp, doc):
    words = ["Warfarin 5", "mg caused bleeding and a rash", "."]
    other = Doc(nlp.vocab, words=words, spaces=[True, False, False])
    assert other.text == doc.text
    other.user_data.update(doc.user_data)
    with pytest.warns(RelationAlignmentWarning, match=r"^3 relation\(s\) no longer fall on token boundaries"):
        realigned = other._.relations
    assert sorted((r.head.text, r.tail.text, r.label) for r in realigned) == [
        ("Warfarin 5", "Warfarin 5 mg caused bleeding and a rash", "Drug-Dose"),  # "5 mg" spans both
        ("Warfarin 5", "mg caused bleeding and a rash", "Drug-AE"),  # two tails, one token now: merged
    ]
    with pytest.raises(RelationAlignmentError, match="token boundaries"):
        get_relations(other, strict=True)


def test_merge_entities_after_the_component_keeps_the_relations(nlp):
    """A nested tail inside a merged entity moves to the merged token; nothing else changes."""
    doc = annotated(
        nlp,
        "She developed severe neutropenia after carbamazepine and a rash.",
        [("severe neutropenia", "ADE"), ("neutropenia", "ADE"), ("carbamazepine", "Drug"), ("rash", "ADE")],
        [(2, 0, "Drug-AE", 0.8), (2, 1, "Drug-AE", 0.7), (2, 3, "Drug-AE", 0.6)],
    )
    merger = spacy.blank("en")
    merger.add_pipe("merge_entities")
    with pytest.warns(RelationAlignmentWarning, match="1 relation.*'neutropenia' \\(now 'carbamazepine' --> 'severe neutropenia'\\)"):
        merged = merger(doc)._.relations
    assert [(r.tail.text, r.score) for r in merged] == [("severe neutropenia", 0.8), ("rash", 0.6)]
    assert all(len(r.tail) == 1 and len(r.head) == 1 for r in merged)


@pytest.mark.parametrize("start", range(0, 11))
def test_a_slice_keeps_the_relations_inside_it(nlp, doc, start):
    """``doc[start:]`` keeps exactly the relations whose both arguments it contains, at its offsets."""
    import warnings

    piece = doc[start:]
    inside = [
        (r.head.text, r.head.label_, r.tail.text, r.tail.label_, r.label, r.score)
        for r in doc._.relations if r.head.start >= start and r.tail.start >= start
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: the rest was cut off on purpose
        sliced = piece.as_doc(copy_user_data=True)
        assert summary(sliced) == inside
    for rel in sliced._.relations:
        assert sliced.text[rel.tail.start_char : rel.tail.end_char] == rel.tail.text


def test_from_docs_keeps_concept_scores(nlp, doc):
    first = annotated(nlp, "Heparin caused HIT.", [("Heparin", "Drug"), ("HIT", "ADE")], [])
    set_concepts(first, list(first.spans["softprompt"]), [0.25, 0.75])
    set_concepts(doc, list(doc.spans["softprompt"]), [0.9, 0.8, 0.7, 0.6])
    expected = [0.25, 0.75] + concept_scores(doc)
    plain = Doc.from_docs([first, doc])
    assert "scores" not in plain.spans["softprompt"].attrs  # what spaCy does: a new group, no attrs
    assert concept_scores(plain) == expected
    joined = concatenate([first, doc])
    assert joined.spans["softprompt"].attrs["scores"] == expected
    (restored,) = DocBin(store_user_data=True, docs=[joined]).get_docs(nlp.vocab)
    assert restored.spans["softprompt"].attrs["scores"] == expected


def test_scores_of_two_span_groups_are_kept_apart(nlp, doc):
    spans = list(doc.spans["softprompt"])
    set_concepts(doc, spans[:2], [0.1, 0.2], spans_key="other", set_ents=False)
    set_concepts(doc, spans, [0.9, 0.8, 0.7, 0.6])
    plain = Doc.from_docs([doc])
    assert concept_scores(plain, "other") == [0.1, 0.2]
    assert concept_scores(plain) == concept_scores(doc)


def test_spans_must_be_labelled_and_from_this_doc(nlp, doc):
    other = nlp.make_doc(doc.text)
    with pytest.raises(ValueError, match="another Doc"):
        set_relations(other, [Relation(doc[0:1], doc[2:3], "Drug-Dose")])
    with pytest.raises(ValueError, match="labelled"):
        set_relations(doc, [Relation(doc[0:1], doc[2:3], "Drug-Dose")])


def test_each_source_replaces_only_its_own_relations(nlp, doc):
    """Two components on one Doc: each sets its relations with its spans_key as source and replaces only those;
    doc._.relations = ... (no source) replaces them all. Stored sources survive a DocBin."""
    warfarin, dose, bleeding, rash = doc.spans["softprompt"]
    doc._.relations = []
    set_relations(doc, [Relation(warfarin, bleeding, "Drug-AE", 0.9)], source="ade")
    set_relations(doc, [Relation(warfarin, dose, "Drug-Dose", 0.8)], source="dose")
    set_relations(doc, [Relation(warfarin, rash, "Drug-AE", 0.7)], source="ade")  # the ade task again
    doc = next(DocBin(store_user_data=True, docs=[doc]).get_docs(nlp.vocab))
    assert sorted((r.tail.text, r.label) for r in doc._.relations) == [("5 mg", "Drug-Dose"), ("rash", "Drug-AE")]
    set_relations(doc, [], source="dose")
    assert [r.tail.text for r in doc._.relations] == ["rash"]
    warfarin, _, bleeding, _ = doc.spans["softprompt"]
    doc._.relations = [Relation(warfarin, bleeding, "Drug-AE", 1.0)]
    assert [r.tail.text for r in doc._.relations] == ["bleeding"]


def test_entities_set_before_stay_and_the_groups_own_are_replaced(nlp):
    """doc.ents around what an entity ruler (medspaCy's target matcher) set before; the span group's own entities
    of a previous run are replaced, not kept."""
    from spacy.tokens import Span

    doc = nlp.make_doc("The patient took aspirin and had nausea.")
    doc.ents = [Span(doc, 1, 2, label="PERSON")]
    patient_aspirin = Span(doc, 1, 4, label="Drug")  # overlaps the ruler's entity: left out of doc.ents
    aspirin, nausea = Span(doc, 3, 4, label="Drug"), Span(doc, 6, 7, label="ADE")
    set_concepts(doc, [patient_aspirin, aspirin, nausea], [0.9, 0.8, 0.7])
    assert [(e.text, e.label_) for e in doc.ents] == [("patient", "PERSON"), ("aspirin", "Drug"), ("nausea", "ADE")]
    set_concepts(doc, [Span(doc, 3, 4, label="Drug")], [0.9])  # a second run: its nausea is gone
    assert [(e.text, e.label_) for e in doc.ents] == [("patient", "PERSON"), ("aspirin", "Drug")]
    assert [s.text for s in doc.spans["softprompt"]] == ["aspirin"]


def test_a_components_scores_count_its_own_relations(nlp, doc):
    """Scored as the component with spans_key "ade": the other component's relations on the Doc are not its false
    positives (gold relations, set with no source, always count)."""
    from spacy.training import Example

    from spacy_softprompt.scoring import score_examples

    gold = doc
    predicted = nlp.make_doc(gold.text)
    warfarin, dose, bleeding, rash = [predicted.char_span(s.start_char, s.end_char, label=s.label_)
                                      for s in gold.spans["softprompt"]]
    set_concepts(predicted, [warfarin, dose, bleeding, rash], spans_key="ade")
    set_relations(predicted, [Relation(warfarin, bleeding, "Drug-AE", 0.9), Relation(warfarin, rash, "Drug-AE")],
                  source="ade")
    set_relations(predicted, [Relation(warfarin, rash, "Drug-Dose", 0.8)], source="other")
    assert len(predicted._.relations) == 3 and len(get_relations(predicted, source="ade")) == 2
    scores = score_examples([Example(predicted, gold)], spans_key="ade")
    assert scores["relations_strict_p"] == 1.0 and scores["relations_strict_r"] == 2 / 3


def test_a_bad_assignment_leaves_the_relations_as_they_were(doc):
    """The stored relations were deleted before the new ones were checked: a bad item lost them all."""
    before = summary(doc)
    warfarin, bleeding = doc.spans["softprompt"][0], doc.spans["softprompt"][2]
    for bad, error, message in (([("x", "y")], TypeError, "is not a spacy_softprompt.Relation"),
                                ([Relation(warfarin, bleeding, "Drug-AE", None)], TypeError, "score None is not a number")):
        with pytest.raises(error, match=message):
            doc._.relations = bad
        assert summary(doc) == before


def test_relations_keep_their_source_when_read_filtered_and_assigned_back(doc):
    """Filtering a component's relations through doc._.relations = [...] stored them with no source: the
    component's next run kept the stale ones beside its new ones, and every other source read them as its own."""
    warfarin, dose, bleeding = (doc.spans["softprompt"][i] for i in (0, 1, 2))
    doc._.relations = []
    set_relations(doc, [Relation(warfarin, bleeding, "Drug-AE", 0.9), Relation(warfarin, dose, "Drug-Dose", 0.3)],
                  source="softprompt")  # a component's run
    doc._.relations = [r for r in doc._.relations if r.score > 0.5]
    assert [r.source for r in doc._.relations] == ["softprompt"]
    set_relations(doc, [Relation(warfarin, dose, "Drug-Dose", 0.8)], source="softprompt")  # the next run
    assert [(r.tail.text, r.score) for r in doc._.relations] == [("5 mg", 0.8)]
    assert get_relations(doc, source="other") == ()


def test_converted_gold_relations_are_replaced_by_the_components_own(tmp_path, nlp):
    """A converter stored gold relations with no source: a component run on the annotated Doc kept them beside
    its predictions (and the scorer counted them as predicted)."""
    from spacy_softprompt.corpora.brat import read_brat

    (tmp_path / "a.txt").write_text("Warfarin caused bleeding.")
    (tmp_path / "a.ann").write_text("T1\tDrug 0 8\tWarfarin\nT2\tADE 16 24\tbleeding\nR1\tDrug-AE Arg1:T1 Arg2:T2\n")
    (gold,), _ = read_brat(tmp_path, nlp)
    assert [r.source for r in gold._.relations] == ["softprompt"]
    spans = list(gold.spans["softprompt"])
    set_concepts(gold, spans[:1], [0.7])
    set_relations(gold, [], source="softprompt")  # what the component writes when it finds no relation
    assert gold._.relations == ()


def test_realign_concepts_after_merge_entities_and_slicing(nlp):
    """spaCy leaves span groups as they were when it retokenizes (their spans then point at other tokens, and
    reading one past the end raised deep inside spaCy) and as_doc drops them: the stored offsets rebuild them."""
    from spacy_softprompt import realign_concepts

    doc = annotated(nlp, "She developed severe neutropenia after carbamazepine and a rash",
                    [("severe neutropenia", "ADE"), ("carbamazepine", "Drug"), ("rash", "ADE")],
                    [(1, 0, "Drug-AE", 0.8)])
    set_concepts(doc, list(doc.spans["softprompt"]), [0.9, 0.8, 0.7])
    merger = spacy.blank("en")
    merger.add_pipe("merge_entities")
    merged = merger(doc)
    realign_concepts(merged)
    group = merged.spans["softprompt"]
    assert [(s.text, s.label_) for s in group] == [("severe neutropenia", "ADE"), ("carbamazepine", "Drug"),
                                                   ("rash", "ADE")]
    assert concept_scores(merged) == [0.9, 0.8, 0.7]
    piece = doc[4:].as_doc(copy_user_data=True)
    realign_concepts(piece)
    assert [(s.text, s.label_) for s in piece.spans["softprompt"]] == [("carbamazepine", "Drug"), ("rash", "ADE")]


def test_gold_converted_under_another_key_is_scored_with_its_relations(tmp_path, nlp):
    """Gold relations carry the converter's span group key; scored with another key (the concepts then read
    from doc.ents), they are still the gold relations."""
    from spacy_softprompt.corpora.brat import read_brat
    from spacy_softprompt.scoring import score_concepts_and_relations

    (tmp_path / "a.txt").write_text("Warfarin caused bleeding.")
    (tmp_path / "a.ann").write_text("T1\tDrug 0 8\tWarfarin\nT2\tADE 16 24\tbleeding\nR1\tDrug-AE Arg1:T1 Arg2:T2\n")
    (gold,), _ = read_brat(tmp_path, nlp, spans_key="gold")
    scores = score_concepts_and_relations([(gold, gold)], spans_key="softprompt")
    assert scores["relations_strict_f"] == 1.0 and scores["concepts_strict_f"] == 1.0


def test_a_components_training_reads_its_own_relations(nlp, doc):
    """Gold relations stored by another span group's converter or component are not this component's task: the
    schema inferred for spans_key "drugs" (whose group holds the drug alone) has no relation type, its training
    queries none, as its scores count none (training read them all before)."""
    from spacy_softprompt.schema import TaskSchema

    warfarin, dose, bleeding, _ = doc.spans["softprompt"]
    doc._.relations = [Relation(warfarin, bleeding, "Drug-AE", 1.0, source="softprompt"),
                       Relation(warfarin, dose, "Drug-Dose", 1.0, source="softprompt")]
    set_concepts(doc, [warfarin], spans_key="drugs")
    schema = TaskSchema.infer([doc], "drugs")
    assert schema.concept_labels == ["Drug"] and schema.relation_labels == []
    assert TaskSchema.infer([doc], "softprompt").relation_labels == ["Drug-AE", "Drug-Dose"]


def test_labels_given_without_a_relations_types_name_the_training_data(doc):
    """Labels given, relation schema inferred: the error blamed a relation schema the user never gave."""
    from spacy_softprompt.schema import TaskSchema

    with pytest.raises(ValueError, match=r"The training data's relations link concept types \['Dosage'\].*add them"):
        TaskSchema.infer([doc], "softprompt", labels=["Drug", "ADE"])
    with pytest.raises(ValueError, match=r"Relation schema mentions concept types \['Dosage'\]"):
        TaskSchema.infer([doc], "softprompt", labels=["Drug", "ADE"], triggers={"Drug": {"Drug-Dose": ["Dosage"]}})
