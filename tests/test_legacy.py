"""Pipelines saved by version 0.1 (before the restructuring; made by
``fixtures/make_legacy_pipelines.py`` at commit 661ec3c) still load and predict
what they predicted then. One rule changed on purpose since: every relation
argument is now a concept in the span group (``decoding.py``), so concepts may
only grow, and only by relation tails."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import spacy

from conftest import TEXTS

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
TEXTS_TO_PREDICT = [t for t, _ in TEXTS] + ["Aspirin gave him a rash."]


@pytest.mark.parametrize("name", ["soft_late", "deep_input_frozen", "none_input", "hard_late"])
def test_legacy_pipeline_predicts_as_before(name):
    expected = json.loads((LEGACY / name / "expected.json").read_text())
    nlp = spacy.load(LEGACY / name)
    for doc, old in zip(nlp.pipe(TEXTS_TO_PREDICT), expected):
        group = doc.spans["softprompt"]
        relations = sorted(list(r.key()) for r in doc._.relations)
        assert relations == [list(r) for r in old["relations"]]
        new = {(s.start_char, s.end_char, s.label_): score for s, score in zip(group, group.attrs["scores"])}
        old_concepts = {tuple(c): score for c, score in zip(old["concepts"], old["scores"])}
        for concept, score in old_concepts.items():
            assert new.pop(concept) == pytest.approx(score, abs=2e-4)
        tails = {(r[3], r[4], r[5]) for r in relations}
        assert set(new) <= tails  # the only new concepts: relation arguments
