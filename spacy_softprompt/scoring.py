"""Concept and end-to-end relation scores, strict and lenient, as in n2c2 2018 track 2.

One scorer for the package: the component's scorer (``spacy_softprompt.scorer.v1``),
``evaluate`` and training call :func:`score_examples`; ``score-brat`` reads raw
``.ann`` offsets (:mod:`.brat_scoring`) and counts them with the same
:func:`count_matches` under the official rule. ``docs/scoring.md`` has the rules
side by side.

What is compared
    Concepts are the spans in ``doc.spans[spans_key]`` (``doc.ents`` when the
    key is absent), each one a (start_char, end_char, label) item. Relations
    are ``doc._.relations``, each one a label plus two arguments, head and
    tail, each argument a (start_char, end_char, concept type) item. In a Doc,
    items are sets per document: duplicates (same offsets and labels) count
    once, and a span carrying two labels is two items. Only character offsets
    are used, so predicted and gold documents may be tokenized differently
    (their texts must be equal).

Matching (the official n2c2 2018 track 2 script, ``track2-evaluation.py``)
    - strict: same label and identical offsets;
    - lenient: same label and overlapping offsets (``a.start < b.end and
      b.start < a.end``);
    - a relation matches when its label matches and head matches head and
      tail matches tail, both under the same mode (offsets and concept type).

Counting: the "pare down" (per document and label)
    System items are visited in order (the ``.ann`` file's order in
    ``score-brat``; offset order (start, end, type) for Docs, which have no
    file order). Each one *claims* every gold item it matches. If one of
    those gold items was already claimed, the system item is discarded:
    neither TP nor FP (counted as ``ignored``), though it still claims the
    others. Otherwise it is a TP if it matches some gold item, else an FP.
    FN = gold items - TP. Each TP claims at least one gold item no other TP
    claimed, so TP <= gold items.

``lenient_matching``: where the package's scorer differs on purpose
    - ``"official"``: the pare-down above, alone. ``score-brat`` always uses it.
    - ``"exact_first"`` (default of :func:`score_examples`, hence of
      ``evaluate``, training and the registered scorer): before the pare-down,
      every system item identical to a gold item is a TP and claims that gold
      item; the others are then pared down in offset order.

    They differ only where gold items of one label overlap each other (nested
    spans of one type, frequent in MACCROBAT, rare in n2c2 2018) or in chains.
    Example: gold Anatomy "left lung lobe" (12-26) and "lung" (17-21), and a
    perfect system predicting both. ``official``: "left lung lobe" comes first,
    claims both gold items (TP); "lung" matches a claimed item and is ignored:
    TP 1, FN 1, lenient recall 0.5 while strict recall is 1.0.
    ``exact_first``: both are exact, TP 2, FN 0. With ``exact_first`` lenient
    TP is never below strict TP. Strict counts are the same under both rules.

Aggregation
    Counts are summed over documents and labels (micro). P = TP/(TP+FP),
    R = TP/(TP+FN), F = 2PR/(P+R); any of them whose denominator is 0 is 0.0
    (as in the n2c2 script), also when there is nothing to find and nothing
    was found. Per-label numbers use the same counts restricted to one label.
    Macro P, R and F are the unweighted means of the per-label ones over the
    labels in gold or predictions (sklearn's ``average="macro"``, as SpERT's
    evaluator computes it): the entity F1 that ADE papers report.
"""
from __future__ import annotations

import operator
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import (Any, Callable, Collection, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Set,
                    Tuple)

import spacy
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc
from spacy.training import Example

from .relations import DEFAULT_SPANS_KEY, concept_relations, concept_spans, corpus_of

TARGETS = ("concepts", "relations")
MODES = ("strict", "lenient")
COUNTS = ("tp", "fp", "fn", "ignored")
LENIENT_MATCHING = ("exact_first", "official")

# Short keys for spaCy's training table (its columns are 6 characters wide): the same
# figures as concepts_strict_f (span group, exact_first) and relations_strict_f.
SHORT_KEYS = {"conc_f": "concepts_strict_f", "rel_f": "relations_strict_f"}
# Proposed ``default_score_weights`` for the component: select on strict concept and
# relation F1; show spaCy's doc.ents F1 without weighting it.
DEFAULT_SCORE_WEIGHTS: Dict[str, Optional[float]] = {"conc_f": 0.5, "rel_f": 0.5, "ents_f": 0.0}


class _Arg(NamedTuple):
    start: int
    end: int
    type: str


# A concept is one argument (itself); a relation is (head, tail).
_Item = Tuple[_Arg, ...]
_ByLabel = Dict[str, Set[_Item]]
Tallies = Dict[Tuple[str, str], Dict[str, Counter]]


def _overlaps(system: _Item, gold: _Item) -> bool:
    """Lenient match: each argument has the same type and overlapping offsets."""
    return all(s.type == g.type and s.start < g.end and g.start < s.end for s, g in zip(system, gold))


def _pare_down(system: Iterable[_Item], gold: Sequence[_Item], match: Callable, claimed: Set[int], counts: Counter):
    """The n2c2 pare-down over ``system`` in the order given; ``claimed`` holds gold positions."""
    for s in system:
        hits = [i for i, g in enumerate(gold) if match(s, g)]
        if any(i in claimed for i in hits):
            counts["ignored"] += 1
        elif hits:
            counts["tp"] += 1
        else:
            counts["fp"] += 1
        claimed.update(hits)


def count_matches(
    system: Sequence[_Item], gold: Sequence[_Item], mode: str, lenient_matching: str = "official"
) -> Counter:
    """TP/FP/FN/ignored for one document and label. ``system`` is visited in the order
    given; duplicates in either sequence are distinct items (as distinct ids are in a
    ``.ann`` file). See the module docstring for both rules."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if lenient_matching not in LENIENT_MATCHING:
        raise ValueError(f"lenient_matching must be one of {LENIENT_MATCHING}, got {lenient_matching!r}")
    counts: Counter = Counter({name: 0 for name in COUNTS})
    claimed: Set[int] = set()
    if mode == "strict":
        _pare_down(system, gold, operator.eq, claimed, counts)
    elif lenient_matching == "official":
        _pare_down(system, gold, _overlaps, claimed, counts)
    else:
        exact = set(gold)
        _pare_down([s for s in system if s in exact], gold, operator.eq, claimed, counts)
        _pare_down([s for s in system if s not in exact], gold, _overlaps, claimed, counts)
    counts["fn"] = len(gold) - counts["tp"]
    return counts


def new_tallies() -> Tallies:
    return {(target, mode): defaultdict(Counter) for target in TARGETS for mode in MODES}


def tally(tallies: Tallies, target: str, label: str, system: Sequence[_Item], gold: Sequence[_Item], rule: str):
    """Add one document's counts for one label, in both modes."""
    for mode in MODES:
        tallies[target, mode][label].update(count_matches(system, gold, mode, rule))


def prf(counts: Counter) -> Dict[str, float]:
    """Precision, recall and F1 from counts; 0.0 wherever a denominator is 0."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f": f}


def macro(per_type: Dict[str, Dict[str, Any]]) -> Dict[str, float]:
    """Unweighted mean of the per-label P, R and F (0.0 without labels)."""
    n = len(per_type)
    return {k: sum(scores[k] for scores in per_type.values()) / n if n else 0.0 for k in ("p", "r", "f")}


def scores_from_tallies(tallies: Tallies) -> Dict[str, Any]:
    """Flat keys, for T in concepts/relations and M in strict/lenient: ``T_M_p``, ``T_M_r``,
    ``T_M_f`` (micro, 0-1 floats), ``T_M_tp``, ``T_M_fp``, ``T_M_fn``, ``T_M_ignored`` (ints),
    ``T_M_macro_p``, ``T_M_macro_r``, ``T_M_macro_f`` (means over labels) and
    ``T_M_per_type``: ``{label: {"p", "r", "f", "tp", "fp", "fn", "ignored"}}``."""
    scores: Dict[str, Any] = {}
    for (target, mode), per_label in tallies.items():
        prefix = f"{target}_{mode}"
        total: Counter = Counter({name: 0 for name in COUNTS})
        for counts in per_label.values():
            total.update(counts)
        for name, value in prf(total).items():
            scores[f"{prefix}_{name}"] = value
        for name in COUNTS:
            scores[f"{prefix}_{name}"] = total[name]
        scores[f"{prefix}_per_type"] = {
            label: {**prf(counts), **{name: counts[name] for name in COUNTS}}
            for label, counts in sorted(per_label.items())
        }
        for name, value in macro(scores[f"{prefix}_per_type"]).items():
            scores[f"{prefix}_macro_{name}"] = value
    return scores


def _concept_items(doc: Doc, spans_key: str) -> _ByLabel:
    items: _ByLabel = defaultdict(set)
    for span in concept_spans(doc, spans_key):
        items[span.label_].add((_Arg(span.start_char, span.end_char, span.label_),))
    return items


def _relation_items(doc: Doc, spans_key: str) -> _ByLabel:
    """The relations among the concepts scored (:func:`concept_relations`), by label."""
    items: _ByLabel = defaultdict(set)
    for rel in concept_relations(doc, spans_key):
        head = _Arg(rel.head.start_char, rel.head.end_char, rel.head.label_)
        tail = _Arg(rel.tail.start_char, rel.tail.end_char, rel.tail.label_)
        items[rel.label].add((head, tail))
    return items


def _restrict(items: _ByLabel, types: Optional[Collection[str]]) -> _ByLabel:
    """Only items whose arguments all have one of ``types`` (None: everything)."""
    if types is None:
        return items
    kept = {label: {i for i in group if all(arg.type in types for arg in i)} for label, group in items.items()}
    return {label: group for label, group in kept.items() if group}


def score_concepts_and_relations(
    pairs: Iterable[Tuple[Doc, Doc]],
    spans_key: str = DEFAULT_SPANS_KEY,
    concept_types: Optional[Collection[str]] = None,
    lenient_matching: str = "exact_first",
    corpus_types: Optional[Mapping[str, Collection[str]]] = None,
) -> Dict[str, Any]:
    """Score (predicted, gold) document pairs; see the module docstring for the semantics
    and :func:`scores_from_tallies` for the keys.

    ``concept_types`` restricts scoring to those concept types (and to relations
    between them), e.g. when a model trained on one corpus is scored on another
    that annotates more types. ``corpus_types`` (corpus -> the concept types it annotates,
    a multi-corpus component's schema) scores a gold Doc tagged with one of those corpora
    (``doc._.corpus``) on its corpus's types only: the other corpora's types are not
    annotated there, so predicting them is neither right nor wrong (as in training, where
    they are not negatives).
    """
    extractors: Dict[str, Callable[[Doc], _ByLabel]] = {
        "concepts": lambda doc: _concept_items(doc, spans_key),
        "relations": lambda doc: _relation_items(doc, spans_key),
    }
    tallies = new_tallies()
    restricted = {corpus: set(types) if concept_types is None else set(types) & set(concept_types)
                  for corpus, types in (corpus_types or {}).items()}
    for predicted, gold in pairs:
        if predicted.text != gold.text:
            raise ValueError(
                f"Predicted and gold texts differ (document {gold._.doc_id or '?'}); "
                "character offsets can only be compared on the same text."
            )
        types = restricted.get(corpus_of(gold), concept_types)
        for target, extract in extractors.items():
            system_items = _restrict(extract(predicted), types)
            gold_items = _restrict(extract(gold), types)
            for label in system_items.keys() | gold_items.keys():
                system_seq = sorted(system_items.get(label, ()))
                gold_seq = sorted(gold_items.get(label, ()))
                tally(tallies, target, label, system_seq, gold_seq, lenient_matching)
    return scores_from_tallies(tallies)


def score_examples(
    examples: Iterable[Example],
    spans_key: str = DEFAULT_SPANS_KEY,
    lenient_matching: str = "exact_first",
    concept_types: Optional[Collection[str]] = None,
    corpus_types: Optional[Mapping[str, Collection[str]]] = None,
) -> Dict[str, Any]:
    """Score spaCy ``Example``s: ``predicted`` against ``reference`` (tagged references on
    their corpus's types, see :func:`score_concepts_and_relations`)."""
    pairs = ((eg.predicted, eg.reference) for eg in examples)
    return score_concepts_and_relations(pairs, spans_key, concept_types, lenient_matching, corpus_types)


def standard_scores(examples: Sequence[Example], spans_key: str = DEFAULT_SPANS_KEY) -> Dict[str, Any]:
    """spaCy's own keys, so ``spacy evaluate`` and ``spacy train`` tables show figures:
    ``ents_p/r/f/per_type`` (``doc.ents``, spaCy's NER scorer) and
    ``spans_<key>_p/r/f/per_type`` (the concepts, spaCy's span scorer, overlaps allowed).
    Both are token-based and exact-match; ``None`` where there is nothing to score."""
    scores = dict(get_ner_prf(examples))
    scores.update(
        Scorer.score_spans(
            examples,
            f"spans_{spans_key}",
            getter=lambda doc, attr: concept_spans(doc, spans_key),
            allow_overlap=True,
        )
    )
    return scores


def softprompt_score(
    examples: Iterable[Example],
    *,
    spans_key: str = DEFAULT_SPANS_KEY,
    lenient_matching: str = "exact_first",
    concept_types: Optional[Collection[str]] = None,
    cat_labels: Sequence[str] = (),
    exclusive_classes: bool = False,
    corpus_types: Optional[Mapping[str, Collection[str]]] = None,
    **kwargs: Any,
) -> Dict[str, Any]:
    """The component's scores: :func:`score_examples`'s keys, spaCy's standard keys
    (:func:`standard_scores`) and the short keys of ``SHORT_KEYS``; with document classes
    (``cat_labels``, which the component passes), spaCy's textcat keys (``cats_score``,
    ``cats_macro_f``, ``cats_f_per_type``, ...: :meth:`spacy.scorer.Scorer.score_cats`,
    exclusive or multilabel as the component predicts; threshold 0.5 for multilabel classes, 0.0
    for exclusive ones, so the top class always counts, as spaCy's exclusive ``textcat`` scores
    with its default threshold: the two are then comparable). ``corpus_types`` (the component
    passes its schema's corpora): a tagged reference Doc is scored on its corpus's types. Other keyword
    arguments (the component's cfg, which ``Pipe.score`` passes on) are ignored."""
    examples = list(examples)
    scores = score_examples(examples, spans_key, lenient_matching, concept_types, corpus_types)
    scores.update(standard_scores(examples, spans_key))
    scores.update({short: scores[long] for short, long in SHORT_KEYS.items()})
    if cat_labels:
        scores.update(cats_scores(examples, cat_labels, exclusive_classes))
    return scores


def cats_scores(examples: Sequence[Example], cat_labels: Sequence[str], exclusive_classes: bool) -> Dict[str, Any]:
    """spaCy's textcat keys for the document classes, as :func:`softprompt_score` counts them,
    over the reference Docs with gold classes (exclusive: one of them at 1.0), the Docs training
    learns classes from: a Doc of a corpus that annotates no class is no class error."""
    def has_gold(doc: Any) -> bool:
        given = [doc.cats[label] for label in cat_labels if label in doc.cats]
        return bool(given) and (not exclusive_classes or 1.0 in given)

    scored = [eg for eg in examples if has_gold(eg.reference)]
    return Scorer.score_cats(scored, "cats", labels=list(cat_labels), multi_label=not exclusive_classes,
                             threshold=0.0 if exclusive_classes else 0.5)


@dataclass(frozen=True)
class SoftPromptScorer:
    """``(examples, **kwargs) -> scores``, :func:`softprompt_score` with these two settings; an
    object, not a closure, so that a pipeline pickles (``nlp.pipe(n_process=...)`` under the
    spawn start method, macOS' and Windows' default). ``spans_key`` None: the ``spans_key``
    keyword (the component passes its cfg) or the package default."""

    spans_key: Optional[str] = None
    lenient_matching: str = "exact_first"

    def __post_init__(self) -> None:
        if self.lenient_matching not in LENIENT_MATCHING:
            raise ValueError(f"lenient_matching must be one of {LENIENT_MATCHING}, got {self.lenient_matching!r}")

    def __call__(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        if self.spans_key is not None:
            kwargs["spans_key"] = self.spans_key
        return softprompt_score(examples, **{**kwargs, "lenient_matching": self.lenient_matching})


@spacy.registry.scorers("spacy_softprompt.scorer.v1")
def make_softprompt_scorer(
    spans_key: Optional[str] = None, lenient_matching: str = "exact_first"
) -> Callable[..., Dict[str, Any]]:
    return SoftPromptScorer(spans_key, lenient_matching)


_HEADER = ["", "strict P", "strict R", "strict F", "lenient P", "lenient R", "lenient F", "gold", "predicted"]
_LEGEND = (
    "P/R/F in %. strict: same type, identical offsets; lenient: same type, overlapping offsets "
    "(n2c2 2018 track 2 scorer). Relations: label and both arguments match. micro: over all "
    "items; macro: mean over types."
)


def _row(name: str, strict: Dict[str, Any], lenient: Dict[str, Any]) -> List[str]:
    cells = [name]
    cells += [f"{100 * strict[k]:.2f}" for k in ("p", "r", "f")]
    cells += [f"{100 * lenient[k]:.2f}" for k in ("p", "r", "f")]
    cells += [str(strict["tp"] + strict["fn"]), str(strict["tp"] + strict["fp"] + strict["ignored"])]
    return cells


def _micro(scores: Dict[str, Any], target: str, mode: str) -> Dict[str, Any]:
    """Micro p, r, f and the counts of ``target`` (concepts, relations) in ``mode``."""
    return {k: scores[f"{target}_{mode}_{k}"] for k in ("p", "r", "f", *COUNTS)}


def _rows(scores: Dict[str, Any]) -> Tuple[List[List[str]], List[List[str]]]:
    """Micro and macro rows (concepts, relations; the macro rows repeat the counts), then one
    row per label."""
    totals, per_label = [], []
    for target in TARGETS:
        strict, lenient = (_micro(scores, target, mode) for mode in MODES)
        totals.append(_row(f"{target} (micro)", strict, lenient))
        strict_macro, lenient_macro = (
            {**counts, **{k: scores[f"{target}_{mode}_macro_{k}"] for k in ("p", "r", "f")}}
            for mode, counts in zip(MODES, (strict, lenient))
        )
        totals.append(_row(f"{target} (macro)", strict_macro, lenient_macro))
    for target in TARGETS:
        lenient_types = scores[f"{target}_lenient_per_type"]
        for label, strict in scores[f"{target}_strict_per_type"].items():
            per_label.append(_row(f"{target[:-1]} {label}", strict, lenient_types[label]))
    return totals, per_label


def format_table(scores: Dict[str, Any]) -> str:
    """A plain-text table for the terminal: micro and macro rows, then per-label rows."""
    totals, per_label = _rows(scores)
    header, *rows = _aligned([_HEADER, *totals, *per_label])
    rule = "-" * len(header)
    lines = [header, rule, *rows[: len(totals)]]
    if per_label:
        lines += [rule, *rows[len(totals):]]
    lines += ["", _LEGEND]
    classes = _cats_rows(scores)
    if classes:
        lines += ["", *_aligned(classes)]
    thresholds = _threshold_rows(scores)
    if thresholds:  # evaluate --thresholds
        lines += ["", _THRESHOLDS, *_aligned([_HEADER, *thresholds])]
    return "\n".join(lines)


def _aligned(rows: List[List[str]]) -> List[str]:
    """Rows of cells as terminal lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:]))]).rstrip()
            for row in rows]


def _cats_rows(scores: Dict[str, Any]) -> List[List[str]]:
    """Document classes (spaCy's ``cats_*`` keys), a header and a row each, macro first; none
    when the scores have no classes."""
    per_class = scores.get("cats_f_per_type")
    if not per_class:
        return []
    macro = {k: scores[f"cats_macro_{k}"] for k in ("p", "r", "f")}
    rows = [["class", "P", "R", "F"]]
    for name, prf in [("classes (macro)", macro), *sorted(per_class.items())]:
        rows.append([name, *(f"{100 * prf[k]:.2f}" for k in ("p", "r", "f"))])
    return rows


def to_markdown(scores: Dict[str, Any]) -> str:
    """The same table as :func:`format_table`, in markdown."""
    totals, per_label = _rows(scores)
    header = ["| " + " | ".join(_HEADER) + " |", "| --- |" + " ---: |" * (len(_HEADER) - 1)]
    lines = header + ["| " + " | ".join(row) + " |" for row in [*totals, *per_label]]
    lines += ["", _LEGEND, ""]
    classes = _cats_rows(scores)
    if classes:  # document classes, spaCy's textcat scores
        lines += ["| " + " | ".join(classes[0]) + " |", "| --- | ---: | ---: | ---: |"]
        lines += ["| " + " | ".join(row) + " |" for row in classes[1:]] + [""]
    thresholds = _threshold_rows(scores)
    if thresholds:
        lines += [_THRESHOLDS, "", *header, *("| " + " | ".join(row) + " |" for row in thresholds), ""]
    return "\n".join(lines)


_THRESHOLDS = "Concepts at each threshold (every type at p, one prediction pass):"


def _threshold_rows(scores: Dict[str, Any]) -> List[List[str]]:
    """The micro concept row at each of ``evaluate --thresholds``' probabilities, lowest first."""
    by_threshold = sorted(scores.get("by_threshold", {}).items(), key=lambda item: float(item[0]))
    return [_row(f"concepts (micro) at p = {p}", *(_micro(at, "concepts", mode) for mode in MODES))
            for p, at in by_threshold]
