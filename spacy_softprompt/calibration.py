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

import numpy as np
from spacy.tokens import Doc

from .relations import corpus_of

#: decimals of a threshold: what a saved component's cfg (JSON, written by srsly) keeps
DECIMALS = 10
#: the lowest floor: below it a threshold written in 10 decimals could read back as 0
MIN_FLOOR = 1e-9
#: the threshold a type is predicted down to while it is calibrated, unless asked otherwise
DEFAULT_FLOOR = 0.001


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


def wanted_count(docs: Sequence[Doc], density: float) -> int:
    """How often a type of ``density`` (concepts per token) is expected in ``docs``: at least once."""
    if density <= 0.0:
        raise ValueError(f"a density is concepts per token, above 0, not {density}")
    return max(1, round(density * sum(len(doc) for doc in docs)))


def density_thresholds(predicted: Sequence[Doc], spans_key: str, labels: Sequence[str], density: float,
                       floor: float, ceiling: float) -> Dict[str, float]:
    """Each label's threshold on ``predicted`` (Docs predicted with every label's threshold at
    ``floor``, the scores in their span group's ``attrs["scores"]``) at which it is found k times,
    k = :func:`wanted_count`: a value between its k-th and next best score (:func:`_between`);
    capped at ``ceiling``, and ``floor`` where the label has fewer than k spans. Spans tied with
    the k-th are all kept, so a label can be found more than k times."""
    if not MIN_FLOOR <= floor <= ceiling <= 1.0:
        raise ValueError(f"calibration needs {MIN_FLOOR} <= floor <= ceiling <= 1, not floor {floor} and "
                         f"ceiling {ceiling}")
    wanted = wanted_count(predicted, density)
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
        elif at_least(found[wanted - 1], ceiling):
            thresholds[label] = ceiling
        else:
            below = found[wanted] if len(found) > wanted else floor
            thresholds[label] = max(floor, _between(found[wanted - 1], below))
    return thresholds


def _between(kept: float, dropped: float) -> float:
    """A threshold that keeps a score of ``kept`` and drops one of ``dropped`` (lower), compared in
    float32 as the component compares them, written in 10 decimals (what a saved component's cfg,
    JSON, keeps): halfway, moved up a 10-decimal step at a time while it would still keep
    ``dropped``. Where the two are closer than that, it keeps both."""
    def written(units: int) -> float:  # the float a 10-decimal number reads back as
        return float(f"{units}e-{DECIMALS}")

    units = math.floor((kept + dropped) / 2 * 10**DECIMALS)
    while at_least(dropped, written(units)) and at_least(kept, written(units + 1)):
        units += 1
    return written(units)


def at_least(score: float, threshold: float) -> bool:
    """Whether a concept scored ``score`` is kept at ``threshold``: compared in float32, as
    :func:`~.decoding.collect_hits` compares the model's probabilities."""
    return bool(np.float32(score) >= np.float32(threshold))


def predicted_counts(predicted: Iterable[Doc], spans_key: str, thresholds: Mapping[str, float]) -> Dict[str, int]:
    """How many spans of each label in ``thresholds`` score at or above its threshold."""
    counts = {label: 0 for label in thresholds}
    for doc in predicted:
        group = doc.spans.get(spans_key, ())
        for span, score in zip(group, group.attrs["scores"] if group else ()):
            if span.label_ in counts and at_least(score, thresholds[span.label_]):
                counts[span.label_] += 1
    return counts
