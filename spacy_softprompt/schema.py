"""The task schema: which concept types exist, and which relations each trigger type heads.

The relation schema is the verbalizer's map: ``triggers[head_type][relation]``
lists the concept types that relation reaches. For ADE corpus v2 that is
``{"Drug": {"Drug-AE": ["Adverse_Effect"], "Drug-Dose": ["Dosage"]}}``; for the
SDoH corpus every event type (Tobacco, Alcohol, ...) heads its roles (Status,
Amount, ...). Relations are always stored head = trigger, tail = argument.

``cat_labels`` are document classes (``doc.cats``), asked by classification
queries; a task without them saves exactly what it saved before they existed.

``corpora`` maps each corpus a component was trained on (``doc._.corpus``) to
the labels it annotates (concept, relation and class names): a Doc of one
corpus is supervised, and asked, only on those, so one corpus's types are never
negatives on another corpus's Docs. A Doc without a tag (or with a tag the
schema does not know, at prediction) is asked every type. Same-named labels of
two corpora that mean different things are given corpus-qualified names
(``sdoh/Drug``) when converting (``--label-map Drug=sdoh/Drug``).
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional

from spacy.tokens import Doc

from .relations import DEFAULT_SPANS_KEY, concept_relations, concept_spans, corpus_of


def check_label_names(names: Iterable[object], kind: str) -> None:
    """A label is a name: a string with something besides spaces (a blank one would be
    predicted as spans labelled '')."""
    wrong = [name for name in names if not isinstance(name, str) or not name.strip()]
    if wrong:
        raise ValueError(f"A {kind} label is a name, not {wrong[0]!r}.")


@dataclass
class TaskSchema:
    concept_labels: List[str]
    # trigger type -> relation label -> tail types (most frequent first)
    triggers: Dict[str, Dict[str, List[str]]] = field(default_factory=dict)
    # document classes written to doc.cats (classification queries)
    cat_labels: List[str] = field(default_factory=list)
    # corpus (doc._.corpus) -> the concept, relation and class labels it annotates
    corpora: Dict[str, List[str]] = field(default_factory=dict)

    @property
    def relation_labels(self) -> List[str]:
        return sorted({rel for rels in self.triggers.values() for rel in rels})

    def relations_for(self, trigger_label: str) -> List[str]:
        return sorted(self.triggers.get(trigger_label, {}))

    def tail_types(self, trigger_label: str, relation: str) -> List[str]:
        return self.triggers.get(trigger_label, {}).get(relation, [])

    def asked(self, corpus: Optional[str]) -> Optional[FrozenSet[str]]:
        """The labels a Doc of ``corpus`` is asked and supervised on; None: every label
        (no tag, or a corpus this task was not trained on)."""
        if corpus is None or corpus not in self.corpora:
            return None
        return frozenset(self.corpora[corpus])

    def to_dict(self) -> Dict:
        data: Dict = {"concept_labels": list(self.concept_labels), "triggers": self.triggers}
        if self.cat_labels:
            data["cat_labels"] = list(self.cat_labels)
        if self.corpora:
            data["corpora"] = {c: list(labels) for c, labels in self.corpora.items()}
        return data

    @classmethod
    def from_dict(cls, data: Dict) -> "TaskSchema":
        return cls(
            list(data["concept_labels"]), {h: dict(r) for h, r in data["triggers"].items()},
            list(data.get("cat_labels") or []), {c: list(l) for c, l in (data.get("corpora") or {}).items()},
        )

    @classmethod
    def infer(
        cls,
        docs: Iterable[Doc],
        spans_key: str = DEFAULT_SPANS_KEY,
        labels: Optional[Iterable[str]] = None,
        triggers: Optional[Dict[str, Dict[str, List[str]]]] = None,
        cat_labels: Optional[Iterable[str]] = None,
        corpus_labels: Optional[Dict[str, List[str]]] = None,
    ) -> "TaskSchema":
        """Collect labels, the relation schema, the document classes (the keys of the
        gold ``doc.cats``) and what each corpus annotates (per ``doc._.corpus``) from gold
        docs; given values win."""
        check_label_names(labels or [], "concept")
        check_label_names(cat_labels or [], "class")
        label_set = set(labels or [])
        cat_set = set(cat_labels or [])
        tails: Dict[str, Dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
        seen_in: Dict[str, set] = defaultdict(set)
        for doc in docs:
            if cat_labels is None:
                cat_set.update(doc.cats)
            spans = concept_spans(doc, spans_key)
            if labels is None:
                label_set.update(span.label_ for span in spans)
            corpus = corpus_of(doc)
            if corpus is not None:
                seen_in[corpus].update(span.label_ for span in spans)
                seen_in[corpus].update(doc.cats)
            for rel in concept_relations(doc, spans_key):
                tails[rel.head.label_][rel.label][rel.tail.label_] += 1
                if labels is None:
                    label_set.update((rel.head.label_, rel.tail.label_))
                if corpus is not None:
                    seen_in[corpus].update((rel.head.label_, rel.tail.label_, rel.label))
        inferred = triggers is None
        if triggers is None:
            triggers = {
                head: {rel: [t for t, _ in counts.most_common()] for rel, counts in sorted(rels.items())}
                for head, rels in sorted(tails.items())
            }
        for head, rels in triggers.items():
            missing = {head} | {t for ts in rels.values() for t in ts}
            if labels is not None and not missing <= label_set:
                whose = ("The training data's relations link" if inferred else "Relation schema mentions")
                raise ValueError(
                    f"{whose} concept types {sorted(missing - label_set)} that are not among the labels "
                    f"{sorted(label_set)}" + ("; add them to the labels, or give a relation_schema without them."
                                              if inferred else ".")
                )
        known = label_set | cat_set | {r for rels in triggers.values() for r in rels}
        for corpus, names in (corpus_labels or {}).items():
            unknown = sorted(set(names) - known)
            if unknown:
                raise ValueError(
                    f"corpus_labels[{corpus!r}] names {unknown}, which are not concept, relation or class "
                    f"labels of this task ({sorted(known)})."
                )
        # inferred: what the corpus's Docs annotate, among the task's labels (given labels may be fewer)
        found = corpus_labels if corpus_labels is not None else {c: set(l) & known for c, l in seen_in.items()}
        corpora = {c: sorted(l) for c, l in sorted(found.items())}
        return cls(sorted(label_set), triggers, sorted(cat_set), corpora)
