"""Thresholds for types added by description, read off unlabelled text (calibration.py)."""
import pytest
import spacy
from spacy.tokens import Span

from spacy_softprompt.calibration import at_least, density_thresholds, gold_density, predicted_counts
from spacy_softprompt.relations import set_concepts


def predicted(nlp, words, concepts):
    """A Doc of ``words`` whose span group holds (start, label, score) one-token concepts."""
    doc = nlp.make_doc(" ".join(words))
    set_concepts(doc, [Span(doc, s, s + 1, label=l) for s, l, _ in concepts], [p for _, _, p in concepts],
                 "softprompt", set_ents=False)
    return doc


def test_each_type_gets_the_score_of_its_k_th_best_span():
    """k = density x tokens; capped at the component's threshold (a type already found that often
    keeps it); the floor where a type has fewer than k spans."""
    nlp = spacy.blank("en")
    docs = [predicted(nlp, ["w"] * 10, [(0, "A", 0.9), (1, "A", 0.2), (2, "B", 0.05)]),
            predicted(nlp, ["w"] * 10, [(0, "A", 0.3), (1, "A", 0.1), (2, "C", 0.8), (3, "C", 0.7)])]
    at = density_thresholds(docs, "softprompt", ["A", "B", "C"], density=0.1, floor=0.001, ceiling=0.5)  # k = 2
    assert at == {"A": pytest.approx(0.25), "B": 0.001, "C": 0.5}  # A: halfway between its 2nd and 3rd
    assert predicted_counts(docs, "softprompt", at) == {"A": 2, "B": 1, "C": 2}
    assert density_thresholds(docs, "softprompt", ["A"], density=0.001, floor=0.001, ceiling=0.95) == {
        "A": pytest.approx(0.6)}  # k is at least 1
    # exactly k spans: halfway down to the floor; kept in the 10 decimals a saved cfg holds
    exact = density_thresholds(docs, "softprompt", ["C"], density=0.1, floor=0.1, ceiling=1.0)
    assert exact == {"C": pytest.approx(0.4)} and round(exact["C"], 10) == exact["C"]
    with pytest.raises(ValueError, match="density"):
        density_thresholds(docs, "softprompt", ["A"], density=0.0, floor=0.001, ceiling=0.5)
    with pytest.raises(ValueError, match="floor"):
        density_thresholds(docs, "softprompt", ["A"], density=0.1, floor=0.6, ceiling=0.5)


def test_thresholds_part_neighbouring_float32_scores_and_keep_ties():
    """Scores are float32 (the model's); a threshold kept in 10 decimals still parts two scores one
    float32 step apart where 10 decimals can, compared as the component compares (float32);
    spans tied with the k-th are all kept, and the counts say so."""
    import numpy as np

    nlp = spacy.blank("en")
    top = float(np.float32(0.3))
    next_down = float(np.nextafter(np.float32(0.3), np.float32(0)))
    docs = [predicted(nlp, ["w"] * 10, [(0, "A", top), (1, "A", next_down), (2, "A", 0.1)])]
    at = density_thresholds(docs, "softprompt", ["A"], density=0.1, floor=0.001, ceiling=0.5)  # k = 1
    assert round(at["A"], 10) == at["A"] and at_least(top, at["A"]) and not at_least(next_down, at["A"])
    assert predicted_counts(docs, "softprompt", at) == {"A": 1}
    tied = [predicted(nlp, ["w"] * 20, [(0, "A", 0.5), (1, "A", 0.4), (2, "A", 0.4), (3, "A", 0.1)])]
    at = density_thresholds(tied, "softprompt", ["A"], density=0.1, floor=0.001, ceiling=0.9)  # k = 2
    assert predicted_counts(tied, "softprompt", at) == {"A": 3}
    with pytest.raises(ValueError, match="floor"):  # a floor that 10 decimals would write as 0
        density_thresholds(docs, "softprompt", ["A"], density=0.1, floor=1e-12, ceiling=0.5)


def test_a_types_density_is_counted_within_its_own_corpus():
    """Concepts per token of the median type, each type over its corpus's tokens: a dense short
    corpus beside a long sparse one keeps its density (pooled tokens would give 1/55 for each)."""
    nlp = spacy.blank("en")
    short = predicted(nlp, ["w"] * 10, [(0, "A", 1.0), (1, "A", 1.0), (2, "B", 1.0)])
    long = predicted(nlp, ["w"] * 100, [(0, "C", 1.0)])
    short._.corpus, long._.corpus = "x", "y"
    assert gold_density([short, long], "softprompt") == pytest.approx(0.1)  # of 0.2, 0.1, 0.01
    with pytest.raises(ValueError, match="no concepts"):
        gold_density([nlp.make_doc("no concepts here")], "softprompt")
