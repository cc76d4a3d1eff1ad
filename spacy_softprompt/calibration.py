"""Thresholds for concept types added by description, chosen on unlabelled text.

A type added to a trained component by its description (``add_label``) is ranked by
the model (its true spans score above its other candidates) but on a lower scale
than the types it was trained on: at the component's one threshold, most new types
predict nothing. The labels that would choose a better threshold are what a
zero-shot type does not have. What is known without them is how often concepts
occur: the trained types' mentions per token in their training data. So each new
type gets the threshold at which it is predicted that often on unlabelled text of
its own kind (its *density*), and never one above the component's threshold: the
scale is too low, not too high, and a type that the model already predicts more
often than that at the component's threshold keeps it.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Dict, Iterable, List, Mapping, Sequence

from spacy.tokens import Doc

from .relations import corpus_of


def gold_density(docs: Iterable[Doc], spans_key: str) -> float:
    """Concepts per token of the median type annotated in ``docs`` (their span group
    ``spans_key``): how often a concept type occurs, read off labelled data. A type is counted
    within its corpus (``doc._.corpus``; untagged Docs are one corpus), so that mixing a dense
    corpus with a sparse one does not dilute either's types."""
    counts: Counter = Counter()
    tokens: Counter = Counter()
    for doc in docs:
        corpus = corpus_of(doc)
        tokens[corpus] += len(doc)
        counts.update((corpus, span.label_) for span in doc.spans.get(spans_key, ()))
    if not counts:
        raise ValueError(f"no concepts in span group {spans_key!r} of the reference documents: no density to read")
    return statistics.median(n / tokens[corpus] for (corpus, _), n in counts.items())


def density_thresholds(predicted: Sequence[Doc], spans_key: str, labels: Sequence[str], density: float,
                       floor: float, ceiling: float) -> Dict[str, float]:
    """Each label's threshold on ``predicted`` (Docs predicted with every label's threshold at
    ``floor``, the scores in their span group's ``attrs["scores"]``) at which it is found k times,
    k = ``density`` times the Docs' tokens (at least 1): halfway between its k-th and next best
    score, so that the 10 decimals a saved component keeps (its cfg is JSON) still part them;
    capped at ``ceiling``, and ``floor`` where the label has fewer than k spans."""
    if not 0.0 < floor <= ceiling <= 1.0:
        raise ValueError(f"calibration needs 0 < floor <= ceiling <= 1, not floor {floor} and ceiling {ceiling}")
    if density <= 0.0:
        raise ValueError(f"a density is concepts per token, above 0, not {density}")
    wanted = max(1, round(density * sum(len(doc) for doc in predicted)))
    scores: Dict[str, List[float]] = {label: [] for label in labels}
    for doc in predicted:
        group = doc.spans.get(spans_key, ())
        for span, score in zip(group, group.attrs["scores"] if group else ()):
            if span.label_ in scores:
                scores[span.label_].append(float(score))
    thresholds = {}
    for label, found in scores.items():
        found.sort(reverse=True)
        if len(found) < wanted:
            thresholds[label] = floor
            continue
        if found[wanted - 1] >= ceiling:
            thresholds[label] = ceiling
            continue
        below = found[wanted] if len(found) > wanted else floor
        thresholds[label] = max(floor, math.floor((found[wanted - 1] + below) / 2 * 1e10) / 1e10)
    return thresholds


def predicted_counts(predicted: Iterable[Doc], spans_key: str, thresholds: Mapping[str, float]) -> Dict[str, int]:
    """How many spans of each label in ``thresholds`` score at or above its threshold."""
    counts = {label: 0 for label in thresholds}
    for doc in predicted:
        group = doc.spans.get(spans_key, ())
        for span, score in zip(group, group.attrs["scores"] if group else ()):
            if span.label_ in counts and score >= thresholds[span.label_]:
                counts[span.label_] += 1
    return counts
