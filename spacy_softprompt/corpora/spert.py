"""Reader for SpERT's JSON format (Eberts & Ulges 2020), the format of the literature's ADE
10-fold splits and of SpERT's CoNLL04 and SciERC files.

A file is one JSON list of documents::

    {"tokens": ["Lethal", "anuria", ...],
     "entities": [{"type": "Adverse-Effect", "start": 0, "end": 2}, ...],  # token span, end exclusive
     "relations": [{"type": "Adverse-Effect", "head": 0, "tail": 1}],      # indices into "entities"
     "orig_id": 83}                                                         # optional

Text. The files keep the tokens but not the spacing between them, so the tokens become the
Doc's words, each followed by one space except the last (``"methotrexate - induced ."``).
That keeps the corpus's tokens exactly, puts every entity boundary at a space (any tokenizer
that splits at whitespace can express every gold span), and gives a WordPiece backbone the
subwords SpERT saw, since SpERT encodes each token on its own and WordPiece splits at
punctuation anyway.

Concepts and relations are stored as every reader of the package stores them: all entities,
overlapping or nested ones included, in the span group (``set_concepts``), a non-overlapping
selection in ``doc.ents``, and the relations in ``doc._.relations`` with head and tail as in
the file. ``doc._.doc_id`` is ``str(orig_id)``, or ``"<file stem>-<index>"`` without one.
Anything not converted as it stands is counted in the summary; malformed input names the file
and the document's index (and the JSON line and column when the JSON itself is bad).
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span

from ..relations import DEFAULT_SPANS_KEY, Relation, set_concepts, set_relations
from .ade import NOT_IN_ENTS
from .brat_reasons import argument_not_converted
from .summary import ConversionSummary, CorpusFormatError

KEYS = ("tokens", "entities", "relations", "orig_id")
MERGED_ENTITY = "entity: same tokens and type as another entity of the document (merged)"
MERGED_RELATION = "relation: same arguments and type as another relation of the document (merged)"
SELF_RELATION = "relation: head and tail are one span and type (kept as a self-relation)"
RELATION_ARGUMENT = argument_not_converted("relation")
IN_MALFORMED_DOCUMENT = "in a malformed document (not converted)"
# The 10-fold files' names: ade_split_3_train.json (SpERT's scripts/fetch_datasets.sh).
FOLD_PARTS = ("train", "dev", "test")
FOLD_FILE = re.compile(rf"^(?P<corpus>.+)_split_(?P<fold>\d+)_(?P<part>{'|'.join(FOLD_PARTS)})\.json$")


def read_spert(
    path: Path,
    nlp: Language,
    *,
    label_map: Optional[Mapping[str, str]] = None,
    relation_map: Optional[Mapping[str, str]] = None,
    lenient: bool = False,
    spans_key: str = DEFAULT_SPANS_KEY,
) -> Tuple[List[Doc], ConversionSummary]:
    """Convert one SpERT JSON file to Docs with concepts and relations.

    ``label_map`` renames entity types and ``relation_map`` relation types; they are separate
    because SpERT's ADE names an entity type and the relation type both ``Adverse-Effect``.
    A map entry naming no type of the file is a ValueError (a typo would rename nothing).
    Malformed input raises :class:`CorpusFormatError`; with ``lenient`` it is counted instead.
    """
    path = Path(path)
    entity_names, relation_names = dict(label_map or {}), dict(relation_map or {})
    summary = ConversionSummary(source=f"SpERT JSON ({path})", lenient=lenient)
    seen_entities: Set[str] = set()
    seen_relations: Set[str] = set()
    docs: List[Doc] = []
    for index, record in enumerate(_load(path, summary)):
        reader = _DocumentReader(path, index, record, summary)
        doc = reader.convert(nlp, entity_names, relation_names, spans_key)
        seen_entities.update(reader.entity_types)
        seen_relations.update(reader.relation_types)
        if doc is not None:
            docs.append(doc)
    checks = (("label_map", entity_names, seen_entities), ("relation_map", relation_names, seen_relations))
    for option, names, seen in checks:
        unknown = sorted(set(names) - seen)
        if unknown:
            raise ValueError(f"{option} names types not in {path}: {unknown}; its types: {sorted(seen)}")
    summary.documents = len(docs)
    return docs, summary


def fold_files(folder: Path) -> Dict[int, Dict[str, Path]]:
    """``{fold: {"train": path, "test": path}}`` for the ``<corpus>_split_<i>_<part>.json``
    files of ``folder``; files of two corpora in one folder are an error (which to take?)."""
    folds: Dict[int, Dict[str, Path]] = {}
    corpora: Set[str] = set()
    for path in sorted(Path(folder).glob("*.json")):
        match = FOLD_FILE.match(path.name)
        if match:
            corpora.add(match["corpus"])
            parts = folds.setdefault(int(match["fold"]), {})
            if match["part"] in parts:  # (split_0 and split_00: the later one was taken without a word)
                raise ValueError(f"{parts[match['part']]} and {path} are both fold {int(match['fold'])}'s "
                                 f"{match['part']} file")
            parts[match["part"]] = path
    if len(corpora) > 1:
        raise ValueError(f"{folder} holds fold files of several corpora: {sorted(corpora)}")
    return {fold: {part: folds[fold][part] for part in FOLD_PARTS if part in folds[fold]} for fold in sorted(folds)}


def split_dev(
    docs: Sequence[Doc], fraction: float, seed: Union[int, str], *, held_out: Iterable[Doc] = ()
) -> Tuple[List[Doc], List[Doc], int]:
    """A seeded random ``fraction`` of ``docs`` as a dev set, removed from train: ``(train, dev,
    duplicate groups)``, each list in the input order.

    Documents with the same words are one unit, so a sentence that occurs twice (ADE: ``orig_id``
    2620 and 2683, both in the train file of 8 of the 10 folds) never sits in train and in dev.
    A unit whose words are also those of a ``held_out`` document (the fold's test file; ADE folds
    2 and 4) stays in train, so dev shares no sentence with test. Units are drawn in a
    ``random.Random(seed)`` shuffle until dev holds ``round(fraction * n)`` documents (one more
    when the last unit drawn is a pair). The same docs, fraction and seed give the same split; the
    third value counts the units of more than one document.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the dev fraction must be between 0 and 1 (exclusive), got {fraction}")
    units: Dict[Tuple[str, ...], List[int]] = {}
    for i, doc in enumerate(docs):
        units.setdefault(_words(doc), []).append(i)
    test_words = {_words(doc) for doc in held_out}
    drawable = [unit for words, unit in units.items() if words not in test_words]
    random.Random(seed).shuffle(drawable)
    target, chosen = min(max(1, round(fraction * len(docs))), len(docs) - 1), set()
    for unit in drawable:
        if len(chosen) >= target:
            break
        chosen.update(unit)
    train = [doc for i, doc in enumerate(docs) if i not in chosen]
    dev = [doc for i, doc in enumerate(docs) if i in chosen]
    if not train or not dev:
        raise ValueError(f"cannot split {len(docs)} documents ({len(units)} distinct) into train and dev")
    return train, dev, sum(len(unit) > 1 for unit in units.values())


def _words(doc: Doc) -> Tuple[str, ...]:
    return tuple(token.text for token in doc)


def _load(path: Path, summary: ConversionSummary) -> List[Any]:
    """The file's list of documents; bad bytes or JSON name the place in the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        summary.report(CorpusFormatError(path, None, f"not UTF-8: byte {err.start} ({err.reason})"))
        return []
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}, character {err.pos}"
        summary.report(CorpusFormatError(path, err.lineno, f"not valid JSON: {err.msg} ({where})"))
        return []
    if not isinstance(data, list):
        summary.report(CorpusFormatError(path, None, f"not a list of documents: the top level is {_kind(data)}"))
        return []
    return data


def _kind(value: Any) -> str:
    """JSON's name for ``value``'s type, for messages about the file."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


class _DocumentReader:
    """One document of a file: checks it, and counts what it holds, converted or not."""

    def __init__(self, path: Path, index: int, record: Any, summary: ConversionSummary):
        self.path, self.index, self.record, self.summary = path, index, record, summary
        self.entity_types: Set[str] = set()
        self.relation_types: Set[str] = set()

    def problem(self, kind: str, detail: str) -> None:
        """Report malformed input; ``kind`` is what the lenient summary counts it under."""
        orig_id = self.record.get("orig_id") if isinstance(self.record, dict) else None
        where = f"document {self.index}" + (f" (orig_id {orig_id!r})" if orig_id is not None else "")
        self.summary.report(CorpusFormatError(self.path, None, f"{kind}: {where}, {detail}"))

    def convert(
        self, nlp: Language, entity_names: Mapping[str, str], relation_names: Mapping[str, str], spans_key: str
    ) -> Optional[Doc]:
        """The Doc, or None when the document itself is malformed (reported, its annotations counted)."""
        tokens = self.tokens()
        if tokens is None:
            self.skip_all()
            return None
        doc = Doc(nlp.vocab, words=tokens, spaces=[True] * (len(tokens) - 1) + [False])
        doc._.doc_id = self.doc_id()
        self.unread_keys("document", self.record, KEYS)
        spans, concepts = self.entities(doc, entity_names)
        set_concepts(doc, concepts, spans_key=spans_key)
        self.summary.entities.update(span.label_ for span in concepts)
        if len(doc.ents) < len(concepts):
            self.summary.adjust(NOT_IN_ENTS, len(concepts) - len(doc.ents))
        set_relations(doc, self.relations(spans, relation_names), source=spans_key)
        return doc

    def unread_keys(self, kind: str, item: Dict[str, Any], read: Sequence[str]) -> None:
        """Keys the converter does not read (e.g. an entity's ``negated``): counted, not lost silently."""
        for key in sorted(set(item) - set(read)):
            self.summary.skip(f"{kind}: key {key!r} not read")

    def tokens(self) -> Optional[List[str]]:
        if not isinstance(self.record, dict):
            self.problem("document is not an object", _kind(self.record))
            return None
        if "orig_id" in self.record and not (_is_index(self.record["orig_id"]) or _is_name(self.record["orig_id"])):
            self.problem("orig_id is not a number or a string", f"orig_id {self.record['orig_id']!r}")
            return None
        tokens = self.record.get("tokens")
        if not isinstance(tokens, list) or not tokens:
            self.problem("no tokens", f"'tokens' is {tokens!r:.60}" if "tokens" in self.record else "no 'tokens' key")
            return None
        for i, token in enumerate(tokens):
            if not isinstance(token, str) or not token or token != token.strip():
                rule = "a token is a non-empty string without whitespace at its edges"
                self.problem("bad token", f"token {i} {token!r:.60}: {rule}")
                return None
        return tokens

    def doc_id(self) -> str:
        orig_id = self.record.get("orig_id")
        return f"{self.path.stem}-{self.index}" if orig_id is None else str(orig_id)

    def items(self, key: str) -> List[Any]:
        """The document's ``entities`` or ``relations`` list (absent: none)."""
        items = self.record.get(key, [])
        if isinstance(items, list):
            return items
        self.problem(f"{key} is not a list", f"{key!r} is {_kind(items)}")
        return []

    def skip_all(self) -> None:
        """Count the annotations of a document that is not converted."""
        if isinstance(self.record, dict):
            for key, kind in (("entities", "entity"), ("relations", "relation")):
                items = self.record.get(key)
                if isinstance(items, list) and items:
                    self.summary.skip(f"{kind}: {IN_MALFORMED_DOCUMENT}", len(items))

    def entities(self, doc: Doc, names: Mapping[str, str]) -> Tuple[List[Optional[Span]], List[Span]]:
        """One span per entry (None where malformed), for the relations' indices, and the
        distinct spans: entries on the same tokens with the same type share one span."""
        spans: List[Optional[Span]] = []
        by_tokens: Dict[Tuple[int, int, str], Span] = {}
        for j, entity in enumerate(self.items("entities")):
            if not (isinstance(entity, dict) and _is_name(entity.get("type"))
                    and _is_index(entity.get("start")) and _is_index(entity.get("end"))):
                expected = '{"type": NAME, "start": INT, "end": INT}'
                self.problem("bad entity", f"entity {j} {entity!r:.80}: expected {expected}")
                spans.append(None)
                continue
            self.unread_keys("entity", entity, ("type", "start", "end"))
            start, end = entity["start"], entity["end"]
            self.entity_types.add(entity["type"])
            if not 0 <= start < end <= len(doc):
                self.problem(
                    "entity span outside the tokens",
                    f"entity {j} {entity!r}: needs 0 <= start < end <= {len(doc)} (end is exclusive)",
                )
                spans.append(None)
                continue
            key = (start, end, names.get(entity["type"], entity["type"]))
            if key in by_tokens:
                self.summary.adjust(MERGED_ENTITY)
            else:
                by_tokens[key] = Span(doc, start, end, label=key[2])
            spans.append(by_tokens[key])
        return spans, list(by_tokens.values())

    def relations(self, spans: Sequence[Optional[Span]], names: Mapping[str, str]) -> List[Relation]:
        relations: Dict[tuple, Relation] = {}
        for j, relation in enumerate(self.items("relations")):
            if not (isinstance(relation, dict) and _is_name(relation.get("type"))
                    and _is_index(relation.get("head")) and _is_index(relation.get("tail"))):
                expected = '{"type": NAME, "head": INT, "tail": INT}'
                self.problem("bad relation", f"relation {j} {relation!r:.80}: expected {expected}")
                continue
            self.unread_keys("relation", relation, ("type", "head", "tail"))
            self.relation_types.add(relation["type"])
            head, tail = relation["head"], relation["tail"]
            if not (0 <= head < len(spans) and 0 <= tail < len(spans)):
                self.problem(
                    "relation argument is not an entity",
                    f"relation {j} {relation!r}: head and tail index the document's {len(spans)} entities",
                )
                continue
            if spans[head] is None or spans[tail] is None:
                self.summary.skip(RELATION_ARGUMENT)
                continue
            rel = Relation(spans[head], spans[tail], names.get(relation["type"], relation["type"]))
            if rel.key() in relations:
                self.summary.adjust(MERGED_RELATION)
                continue
            if spans[head] is spans[tail]:
                self.summary.adjust(SELF_RELATION)
            relations[rel.key()] = rel
            self.summary.relations[rel.label] += 1
        return list(relations.values())
