"""Composition with medspaCy: sentence splitter and sectionizer before softprompt_ie,
ConText after it, reading the concepts from doc.ents and from the span group.

medspaCy is installed by ``make install`` (extra ``medspacy``), so a missing one
is a failure here, not a skip. It registers its factories when imported (it has
no entry points), which is why the composition imports it, as the README's
snippet does (tests/test_readme.py runs that snippet in a fresh interpreter).
"""
import pytest
import spacy

from conftest import annotate, fit_pipeline

NOTE = "Allergies: The patient denies rash after aspirin. Ibuprofen caused nausea."
CONCEPTS = [("rash", "ADE"), ("aspirin", "Drug"), ("Ibuprofen", "Drug"), ("nausea", "ADE")]
RELATIONS = [("aspirin", "Drug-AE", "rash"), ("Ibuprofen", "Drug-AE", "nausea")]


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    """A pipeline fitted on the note (this test is about composition, not accuracy)."""
    gold = annotate(spacy.blank("en"), NOTE, CONCEPTS, RELATIONS)
    nlp = fit_pipeline([gold], 60, model={"backbone": tiny_bert, "strategy": "none", "freeze_backbone": False})
    path = tmp_path_factory.mktemp("medspacy") / "pipeline"
    nlp.to_disk(path)
    return path


@pytest.mark.parametrize("input_span_type", ["ents", "group"])
def test_context_marks_negated_concepts_and_relations_survive(trained, input_span_type):
    import medspacy  # noqa: F401  (registers the medspacy_* factories)

    nlp = spacy.load(trained)
    nlp.add_pipe("medspacy_pyrush", first=True)
    nlp.add_pipe("medspacy_sectionizer", after="medspacy_pyrush")
    nlp.add_pipe(
        "medspacy_context",
        config={"input_span_type": input_span_type, "span_group_name": "softprompt"},
    )
    doc = nlp(NOTE)
    concepts = doc.ents if input_span_type == "ents" else doc.spans["softprompt"]
    negated = {span.text: span._.is_negated for span in concepts}
    assert negated == {"aspirin": True, "rash": True, "Ibuprofen": False, "nausea": False}
    assert [(r.head.text, r.label, r.tail.text) for r in doc._.relations] == [
        ("aspirin", "Drug-AE", "rash"), ("Ibuprofen", "Drug-AE", "nausea")
    ]
    assert any(section.category == "allergy" for section in doc._.sections)
