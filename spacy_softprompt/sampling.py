"""Few-shot subsets: every concept label gets at least K examples, from few documents.

The selection is reproducible from the seed and stays close to a random draw:
documents are visited in a seeded random order and taken when they add an
example of a label still below K (first fit); a second pass then drops taken
documents that turned out to be redundant, latest first. Picking the most
label-dense document at each step would need fewer documents, but would favour
the same atypical long sentences for every seed.
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from spacy.tokens import Doc

from .relations import DEFAULT_SPANS_KEY, concept_spans

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleReport:
    """What a few-shot sample holds, per concept label."""

    shots: int
    seed: int
    documents: int
    available: Dict[str, int]  # examples per label in the pool
    selected: Dict[str, int]  # examples per label in the sample
    shortfall: Dict[str, int]  # label -> examples missing to reach ``shots`` (pool too small)

    @property
    def complete(self) -> bool:
        """Whether every label reached ``shots``."""
        return not self.shortfall

    def table(self) -> str:
        """Per-label counts as an aligned text table, for the command line."""
        width = max([len("label")] + [len(label) for label in self.available])
        lines = [f"{'label':<{width}}  {'available':>9}  {'selected':>8}  shortfall"]
        for label in sorted(self.available):
            missing = self.shortfall.get(label, 0)
            row = f"{label:<{width}}  {self.available[label]:>9}  {self.selected.get(label, 0):>8}  "
            lines.append((row + (str(missing) if missing else "")).rstrip())
        return "\n".join(lines)


def label_counts(doc: Doc, spans_key: str = DEFAULT_SPANS_KEY) -> Counter:
    """Concept examples per label in ``doc``: the span group if present, else ``doc.ents``."""
    return Counter(span.label_ for span in concept_spans(doc, spans_key))


def sample_few_shot(
    docs: Sequence[Doc], shots: int, seed: int, spans_key: str = DEFAULT_SPANS_KEY
) -> Tuple[List[Doc], SampleReport]:
    """A subset of ``docs`` with at least ``shots`` examples of every label (or all there are).

    Returns the chosen docs in their input order, and a :class:`SampleReport`; a label
    with fewer than ``shots`` examples in ``docs`` is listed in ``report.shortfall``.
    """
    if shots < 1:
        raise ValueError(f"shots must be at least 1, not {shots}")
    counts = [label_counts(doc, spans_key) for doc in docs]
    available: Counter = sum(counts, Counter())
    target = {label: min(shots, n) for label, n in available.items()}

    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    have: Counter = Counter()
    chosen: List[int] = []
    for i in order:
        if all(have[label] >= n for label, n in target.items()):
            break
        if any(have[label] < target[label] for label in counts[i]):
            chosen.append(i)
            have.update(counts[i])
    for i in reversed(list(chosen)):
        if all(have[label] - counts[i][label] >= target[label] for label in counts[i]):
            chosen.remove(i)
            have.subtract(counts[i])

    shortfall = {label: shots - n for label, n in sorted(available.items()) if n < shots}
    if shortfall:
        there_are = ", ".join(f"{label} ({available[label]})" for label in shortfall)
        logger.warning("Fewer than %d examples exist for %s; took all there are.", shots, there_are)
    report = SampleReport(
        shots=shots,
        seed=seed,
        documents=len(chosen),
        available=dict(sorted(available.items())),
        selected={label: have[label] for label in sorted(available)},
        shortfall=shortfall,
    )
    return [docs[i] for i in sorted(chosen)], report
