"""Concept and end-to-end relation scores, strict and lenient, as in n2c2 2018 track 2.

This is the one scorer of the package: the component's ``score()``, the
``evaluate`` verb and the ``score-brat`` verb all call it, so a number means
the same thing wherever it is printed.

What is compared
    Concepts are the spans in ``doc.spans[spans_key]`` (``doc.ents`` when the
    key is absent), each one a (start_char, end_char, label) item. Relations
    are ``doc._.relations``, each one a label plus two arguments, head and
    tail, each argument a (start_char, end_char, concept type) item. Items are
    sets per document: duplicates (same offsets and labels) count once, and a
    span carrying two labels is two items. Only character offsets are used, so
    predicted and gold documents may be tokenized differently (their texts
    must be equal).

Matching (the official n2c2 2018 track 2 scorer, ``track2_eval.py``)
    - strict: same label and identical offsets;
    - lenient: same label and overlapping offsets (``a.start < b.end and
      b.start < a.end``);
    - a relation matches when its label matches and head matches head and
      tail matches tail, both under the same mode (offsets and concept type).

Counting one-to-many overlaps (lenient)
    We follow the n2c2 script's "pare down" step rather than a one-to-one
    matching, so that lenient numbers mean what they mean in papers that used
    it. Per document and label:

    1. exact matches come first: a system item identical to a gold item is a
       TP and claims that gold item (this step is ours, see below);
    2. the other system items are visited in offset order (the script follows
       the order of the system ``.ann`` file). Each one *claims* every gold item
       it overlaps. If one of those gold items was already claimed, the system
       item is discarded: neither TP nor FP (reported as ``ignored``); it
       still claims the other gold items it overlaps, as in the script.
       Otherwise it is a TP if it overlaps some gold item, else an FP;
    3. FN = gold items - TP.

    Consequences: two predictions overlapping one gold concept give 1 TP and
    1 ignored; one prediction overlapping two gold concepts gives 1 TP and
    1 FN; s1 overlapping g1, then s2 overlapping g1 and g2, make s2 ignored
    and g2 an FN although s2 touches it.

    Step 1 is the one departure from the script. Without it, where gold items
    of one label overlap each other (nested spans of one type: frequent in
    MACCROBAT, rare in n2c2 2018), the outer item's prediction claims the inner
    gold item too, and even a perfect system loses the inner one as an FN:
    lenient would score below strict. With it, lenient TP is never below strict
    TP. The counts then differ from the script's only where an exactly
    predicted gold item would have been claimed first by another prediction
    that overlaps it (nested same-label gold, or a chain like the third case
    above); we count the exact prediction as the TP. Each TP claims at least
    one gold item no other TP claimed, so
    TP <= gold items and FN is never negative. In strict mode only step 1
    applies (duplicates are merged), so ``ignored`` is always 0 there.

Aggregation
    Counts are summed over documents and labels (micro). P = TP/(TP+FP),
    R = TP/(TP+FN), F = 2PR/(P+R); any of them whose denominator is 0 is 0.0
    (as in the n2c2 script), also when there is nothing to find and nothing
    was found. Per-label numbers use the same counts restricted to one label.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Callable, Collection, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from spacy.tokens import Doc
from spacy.training import Example

from .relations import DEFAULT_SPANS_KEY, concept_spans, get_relations

TARGETS = ("concepts", "relations")
MODES = ("strict", "lenient")
COUNTS = ("tp", "fp", "fn", "ignored")


class _Arg(NamedTuple):
    start: int
    end: int
    type: str


# A concept is one argument (itself); a relation is (head, tail).
_Item = Tuple[_Arg, ...]
_ByLabel = Dict[str, Set[_Item]]


def _concept_items(doc: Doc, spans_key: str) -> _ByLabel:
    spans = concept_spans(doc, spans_key)
    items: _ByLabel = defaultdict(set)
    for span in spans:
        items[span.label_].add((_Arg(span.start_char, span.end_char, span.label_),))
    return items


def _relation_items(doc: Doc) -> _ByLabel:
    items: _ByLabel = defaultdict(set)
    for rel in get_relations(doc):
        head = _Arg(rel.head.start_char, rel.head.end_char, rel.head.label_)
        tail = _Arg(rel.tail.start_char, rel.tail.end_char, rel.tail.label_)
        items[rel.label].add((head, tail))
    return items


def _overlaps(system: _Item, gold: _Item) -> bool:
    """Lenient match: each argument has the same type and overlapping offsets."""
    return all(s.type == g.type and s.start < g.end and g.start < s.end for s, g in zip(system, gold))


def _count(system: Set[_Item], gold: Set[_Item], lenient: bool) -> Counter:
    """TP/FP/FN/ignored for one document and label: exact matches (all of strict mode),
    then, when lenient, the n2c2 pare-down over the other system items."""
    exact = system & gold
    claimed: Set[_Item] = set(exact)
    counts: Counter = Counter(tp=len(exact))
    for s in sorted(system - exact):
        hits = [g for g in gold if _overlaps(s, g)] if lenient else []
        if any(g in claimed for g in hits):
            counts["ignored"] += 1
        elif hits:
            counts["tp"] += 1
        else:
            counts["fp"] += 1
        claimed.update(hits)
    counts["fn"] += len(gold) - counts["tp"]
    return counts


def prf(counts: Counter) -> Dict[str, float]:
    """Precision, recall and F1 from counts; 0.0 wherever a denominator is 0."""
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f": f}


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
) -> Dict[str, Any]:
    """Score (predicted, gold) document pairs; see the module docstring for the semantics.

    ``concept_types`` restricts scoring to those concept types (and to relations
    between them), e.g. when a model trained on one corpus is scored on another
    that annotates more types.

    Returns flat keys usable as spaCy scores, for T in concepts/relations and
    M in strict/lenient: ``T_M_p``, ``T_M_r``, ``T_M_f`` (0-1 floats),
    ``T_M_tp``, ``T_M_fp``, ``T_M_fn``, ``T_M_ignored`` (ints) and
    ``T_M_per_type``: ``{label: {"p", "r", "f", "tp", "fp", "fn", "ignored"}}``.
    """
    extractors: Dict[str, Callable[[Doc], _ByLabel]] = {
        "concepts": lambda doc: _concept_items(doc, spans_key),
        "relations": _relation_items,
    }
    tallies: Dict[Tuple[str, str], Dict[str, Counter]] = {
        (target, mode): defaultdict(Counter) for target in TARGETS for mode in MODES
    }
    for predicted, gold in pairs:
        if predicted.text != gold.text:
            raise ValueError(
                f"Predicted and gold texts differ (document {gold._.doc_id or '?'}); "
                "character offsets can only be compared on the same text."
            )
        for target, extract in extractors.items():
            system_items = _restrict(extract(predicted), concept_types)
            gold_items = _restrict(extract(gold), concept_types)
            for label in system_items.keys() | gold_items.keys():
                system_set, gold_set = system_items.get(label, set()), gold_items.get(label, set())
                for mode in MODES:
                    tallies[target, mode][label].update(_count(system_set, gold_set, mode == "lenient"))
    scores: Dict[str, Any] = {}
    for (target, mode), per_label in tallies.items():
        prefix = f"{target}_{mode}"
        total: Counter = sum(per_label.values(), Counter())
        for name, value in prf(total).items():
            scores[f"{prefix}_{name}"] = value
        for name in COUNTS:
            scores[f"{prefix}_{name}"] = total[name]
        scores[f"{prefix}_per_type"] = {
            label: {**prf(counts), **{name: counts[name] for name in COUNTS}}
            for label, counts in sorted(per_label.items())
        }
    return scores


def score_examples(examples: Iterable[Example], spans_key: str = DEFAULT_SPANS_KEY) -> Dict[str, Any]:
    """Score spaCy ``Example``s: ``predicted`` against ``reference``."""
    return score_concepts_and_relations(((eg.predicted, eg.reference) for eg in examples), spans_key)


_HEADER = ["", "strict P", "strict R", "strict F", "lenient P", "lenient R", "lenient F", "gold", "predicted"]
_LEGEND = (
    "P/R/F in %. strict: same type, identical offsets; lenient: same type, overlapping offsets "
    "(n2c2 2018 track 2 scorer). Relations: label and both arguments match."
)


def _row(name: str, strict: Dict[str, Any], lenient: Dict[str, Any]) -> List[str]:
    cells = [name]
    cells += [f"{100 * strict[k]:.2f}" for k in ("p", "r", "f")]
    cells += [f"{100 * lenient[k]:.2f}" for k in ("p", "r", "f")]
    cells += [str(strict["tp"] + strict["fn"]), str(strict["tp"] + strict["fp"] + strict["ignored"])]
    return cells


def _rows(scores: Dict[str, Any]) -> Tuple[List[List[str]], List[List[str]]]:
    """Micro rows (concepts, relations), then one row per label."""
    micro, per_label = [], []
    for target in TARGETS:
        strict, lenient = (
            {k: scores[f"{target}_{mode}_{k}"] for k in ("p", "r", "f", *COUNTS)} for mode in MODES
        )
        micro.append(_row(f"{target} (micro)", strict, lenient))
    for target in TARGETS:
        lenient_types = scores[f"{target}_lenient_per_type"]
        for label, strict in scores[f"{target}_strict_per_type"].items():
            per_label.append(_row(f"{target[:-1]} {label}", strict, lenient_types[label]))
    return micro, per_label


def format_table(scores: Dict[str, Any]) -> str:
    """A plain-text table for the terminal: micro rows, then per-label rows."""
    micro, per_label = _rows(scores)
    widths = [max(len(row[i]) for row in [_HEADER, *micro, *per_label]) for i in range(len(_HEADER))]

    def line(cells: List[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

    rule = "-" * len(line(_HEADER))
    lines = [line(_HEADER), rule, *map(line, micro)]
    if per_label:
        lines += [rule, *map(line, per_label)]
    return "\n".join(lines + ["", _LEGEND])


def to_markdown(scores: Dict[str, Any]) -> str:
    """The same table as :func:`format_table`, in markdown."""
    micro, per_label = _rows(scores)
    lines = ["| " + " | ".join(_HEADER) + " |", "| --- |" + " ---: |" * (len(_HEADER) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in [*micro, *per_label]]
    return "\n".join(lines + ["", _LEGEND, ""])
