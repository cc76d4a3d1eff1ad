"""Reader for the ADE corpus v2 (Gurulingappa et al. 2012).

``DRUG-AE.rel`` and ``DRUG-DOSE.rel`` hold one relation per line,
``PMID|sentence|arg text|begin|end|drug text|begin|end``. The offsets count
from the start of the whole abstract, which the corpus does not include, so
every mention is located in its sentence by string search.

Placing a mention whose string occurs several times in its sentence
-------------------------------------------------------------------
All mentions of one sentence share the sentence's (unknown) start offset in
the abstract: ``abstract_begin = sentence_start + local_begin``. Each mention
therefore votes, for every occurrence of its string, for the sentence start
that occurrence would imply. The start with the most votes wins (mentions
whose string occurs once fix it unambiguously), and a repeated mention takes
the occurrence at ``abstract_begin - sentence_start``. Only when the vote is
tied or that position is not an occurrence does the reader fall back to
*offset rank*: the k-th smallest abstract offset among that string's mentions
in the sentence takes the k-th occurrence. ``summary.adjusted`` counts both
cases, so the number of choices made is visible.

One Doc is made per unique (PMID, sentence), with the entities and relations
of all its rows merged; ``doc._.doc_id`` is ``f"{pmid}-{k}"`` where ``k`` is
the sentence's position in its abstract (ordered by its earliest mention
offset), then ADE-NEG sentences of that PMID in file order.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Set, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span

from ..relations import DEFAULT_SPANS_KEY, Relation, set_concepts, set_relations
from .summary import ConversionSummary, CorpusFormatError, read_utf8

DRUG = "Drug"
ADVERSE_EFFECT = "Adverse_Effect"
DOSAGE = "Dosage"
DRUG_AE = "Drug-AE"
DRUG_DOSE = "Drug-Dose"
# (file, label of the first argument, relation label)
REL_FILES: Tuple[Tuple[str, str, str], ...] = (
    ("DRUG-AE.rel", ADVERSE_EFFECT, DRUG_AE),
    ("DRUG-DOSE.rel", DOSAGE, DRUG_DOSE),
)
NEG_FILE = "ADE-NEG.txt"
SPLITS_FILE = "splits.json"
SPLITS = ("train", "dev", "test")
LABELS = (DRUG, ADVERSE_EFFECT, DOSAGE, DRUG_AE, DRUG_DOSE)

CHOSEN_BY_OFFSET = "repeated mention string: occurrence chosen by sentence offset"
CHOSEN_BY_RANK = "repeated mention string: occurrence chosen by offset rank (sentence offset ambiguous)"
ALIGNED = "mention aligned to token boundaries (text changed)"
NOT_IN_ENTS = "overlapping entity kept in doc.spans only (not in doc.ents)"
NEG_DUPLICATE = f"{NEG_FILE}: duplicate sentence merged"
NEG_EXCLUDED = f"{NEG_FILE}: sentence without annotations (include_negatives=False)"


@dataclass(frozen=True)
class _Mention:
    text: str
    begin: int  # abstract-level offsets, as in the file
    end: int
    label: str


@dataclass(frozen=True)
class _Row:
    path: Path
    line: int
    pmid: str
    sentence: str
    arg: _Mention
    drug: _Mention
    relation: str


def read_ade(
    folder: Path,
    nlp: Language,
    *,
    split: Optional[str] = None,
    label_map: Optional[Mapping[str, str]] = None,
    lenient: bool = False,
    include_negatives: bool = False,
    spans_key: str = DEFAULT_SPANS_KEY,
    splits_file: Optional[Path] = None,
) -> Tuple[List[Doc], ConversionSummary]:
    """Convert the corpus in ``folder`` (or one split of it) to Docs with concepts and relations.

    ``label_map`` renames entity and relation labels (e.g. ``{"Adverse_Effect": "ADE"}``).
    Malformed rows raise :class:`CorpusFormatError`; with ``lenient`` they are counted instead.
    ``splits_file`` defaults to ``splits.json`` in ``folder``.
    """
    folder = Path(folder)
    names = dict(label_map or {})
    unknown = sorted(set(names) - set(LABELS))
    if unknown:
        raise ValueError(f"label_map has unknown labels {unknown}; known: {list(LABELS)}")
    summary = ConversionSummary(source=f"ADE corpus v2 ({folder}, split={split})", lenient=lenient)
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    split_of = load_splits(Path(splits_file or folder / SPLITS_FILE)) if split is not None else {}

    rows: List[_Row] = []
    for file_name, arg_label, relation in REL_FILES:
        rows.extend(_read_rows(folder / file_name, arg_label, relation, summary))
    by_sentence: Dict[Tuple[str, str], List[_Row]] = defaultdict(list)
    for row in rows:
        by_sentence[(row.pmid, row.sentence)].append(row)
    order = _positive_order(by_sentence)

    docs: List[Tuple[int, int, Doc]] = []
    for (pmid, sentence), sentence_rows in by_sentence.items():
        if not _selected(pmid, split, split_of, summary, Counter(r.path.name for r in sentence_rows)):
            continue
        doc = _sentence_doc(nlp, sentence, sentence_rows, names, spans_key, summary)
        if doc is None:
            continue
        k = order[(pmid, sentence)]
        doc._.doc_id = f"{pmid}-{k}"
        docs.append((int(pmid), k, doc))

    neg_path = folder / NEG_FILE
    if neg_path.exists():
        docs.extend(
            _negative_docs(neg_path, nlp, by_sentence, split, split_of, include_negatives, spans_key, summary)
        )
    elif include_negatives:
        raise FileNotFoundError(f"{neg_path} not found (include_negatives=True needs it)")

    docs.sort(key=lambda item: (item[0], item[1]))
    summary.documents = len(docs)
    return [doc for _, _, doc in docs], summary


def load_splits(path: Path) -> Dict[str, str]:
    """Document id (ADE: PMID) -> split name, from a ``splits.json`` (``{"train": [ids], "dev": ...,
    "test": ...}``); an id listed twice is a format error."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; it is needed to select a split")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CorpusFormatError(path, getattr(err, "lineno", None), f"not a JSON file ({err})") from err
    if not isinstance(data, dict) or not all(isinstance(data.get(n, []), list) for n in SPLITS):
        raise CorpusFormatError(path, None, 'not a splits file: expected {"train": [ids], "dev": [ids], "test": [ids]}')
    unknown = sorted(key for key in data if key not in SPLITS and not key.startswith("_"))
    if unknown:  # a misspelt split's ids were read as in no split
        raise CorpusFormatError(path, None, f"unknown split name(s) {', '.join(map(repr, unknown))}: the splits are "
                                            f"{', '.join(SPLITS)} (a key starting with _ is a comment)")
    split_of: Dict[str, str] = {}
    for name in SPLITS:
        for pmid in data.get(name, []):
            if str(pmid) in split_of:
                raise CorpusFormatError(path, None, f"PMID {pmid} is in both {split_of[str(pmid)]} and {name}")
            split_of[str(pmid)] = name
    return split_of


def _selected(
    pmid: str, split: Optional[str], split_of: Dict[str, str], summary: ConversionSummary, rows: Counter
) -> bool:
    """Whether ``pmid`` belongs to the requested split; rows left out are counted per file."""
    if split is None or split_of.get(pmid) == split:
        return True
    reason = "a PMID in another split" if pmid in split_of else f"a PMID in no split of {SPLITS_FILE}"
    for file_name, n in rows.items():
        summary.skip(f"{file_name}: line of {reason}", n)
    return False


def _lines(path: Path, summary: ConversionSummary) -> List[str]:
    """The file's lines, a byte order mark dropped; a file that is not UTF-8 stops the conversion at
    its line (lenient: reported, and none of its lines read)."""
    text = read_utf8(path, summary)
    return [] if text is None else text.removeprefix("\ufeff").split("\n")


def _read_rows(path: Path, arg_label: str, relation: str, summary: ConversionSummary) -> List[_Row]:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found")
    rows = []
    for line_no, line in enumerate(_lines(path, summary), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(path, line_no, line, arg_label, relation))
        except CorpusFormatError as err:
            summary.report(err)
    return rows


def _parse_row(path: Path, line_no: int, line: str, arg_label: str, relation: str) -> _Row:
    cols = line.split("|")
    if len(cols) != 8:
        raise CorpusFormatError(path, line_no, f"wrong column count: {len(cols)} instead of 8")
    pmid, sentence = cols[0].strip(), cols[1]
    if not pmid.isdigit():
        raise CorpusFormatError(path, line_no, f"PMID is not a number: {pmid!r}")
    if not sentence.strip():
        raise CorpusFormatError(path, line_no, "empty sentence")
    arg = _parse_mention(path, line_no, cols[2:5], arg_label)
    drug = _parse_mention(path, line_no, cols[5:8], DRUG)
    return _Row(path, line_no, pmid, sentence, arg, drug, relation)


def _parse_mention(path: Path, line_no: int, cols: List[str], label: str) -> _Mention:
    text, begin, end = cols
    try:
        b, e = int(begin), int(end)
    except ValueError:
        raise CorpusFormatError(path, line_no, f"offset is not an integer: {begin!r}, {end!r}") from None
    if not text.strip():
        raise CorpusFormatError(path, line_no, f"empty {label} mention")
    if b < 0 or e - b != len(text):
        raise CorpusFormatError(
            path, line_no, f"offsets do not fit the mention: {text!r} ({label}) at {b}-{e}"
        )
    return _Mention(text, b, e, label)


def _positive_order(by_sentence: Mapping[Tuple[str, str], List[_Row]]) -> Dict[Tuple[str, str], int]:
    """Index of each sentence within its abstract: sentences do not overlap, so the earliest
    mention offset orders them as in the abstract."""
    per_pmid: Dict[str, List[Tuple[int, str]]] = defaultdict(list)
    for (pmid, sentence), rows in by_sentence.items():
        first = min(min(r.arg.begin, r.drug.begin) for r in rows)
        per_pmid[pmid].append((first, sentence))
    return {
        (pmid, sentence): k
        for pmid, items in per_pmid.items()
        for k, (_, sentence) in enumerate(sorted(items))
    }


def _occurrences(sentence: str, text: str) -> List[int]:
    found, i = [], sentence.find(text)
    while i >= 0:
        found.append(i)
        i = sentence.find(text, i + 1)
    return found


def _place(sentence: str, mentions: Set[_Mention], summary: ConversionSummary) -> Dict[_Mention, int]:
    """Local start of each mention found in ``sentence`` (rule in the module docstring)."""
    occ = {m.text: _occurrences(sentence, m.text) for m in mentions}
    votes = Counter(b - o for text, b in {(m.text, m.begin) for m in mentions} for o in occ[text])
    top = votes.most_common(2)
    start = top[0][0] if top and (len(top) == 1 or top[0][1] > top[1][1]) else None
    placed: Dict[_Mention, int] = {}
    for m in mentions:
        found = occ[m.text]
        if len(found) == 1:
            placed[m] = found[0]
        elif len(found) > 1 and start is not None and m.begin - start in found:
            placed[m] = m.begin - start
            summary.adjust(CHOSEN_BY_OFFSET)
        elif found:
            offsets = sorted({n.begin for n in mentions if n.text == m.text})
            placed[m] = found[min(offsets.index(m.begin), len(found) - 1)]
            summary.adjust(CHOSEN_BY_RANK)
    return placed


def _sentence_doc(
    nlp: Language,
    sentence: str,
    rows: List[_Row],
    names: Mapping[str, str],
    spans_key: str,
    summary: ConversionSummary,
) -> Optional[Doc]:
    """One Doc with the merged, deduplicated entities and relations of all rows of a sentence;
    None when every row was reported (an empty Doc would pass for a negative example)."""
    doc = nlp.make_doc(sentence)
    placed = _place(sentence, {m for r in rows for m in (r.arg, r.drug)}, summary)
    spans: Dict[_Mention, Span] = {}
    by_tokens: Dict[Tuple[int, int, str], Span] = {}
    relations: Dict[tuple, Relation] = {}
    for row in rows:
        missing = [m for m in (row.arg, row.drug) if m not in placed]
        if missing:
            what = ", ".join(f"{m.text!r} ({m.label})" for m in missing)
            summary.report(CorpusFormatError(row.path, row.line, f"mention not found in sentence: {what}"))
            continue
        for m in (row.arg, row.drug):
            if m not in spans:
                spans[m] = _mention_span(doc, m, placed[m], names, by_tokens, summary)
        rel = Relation(spans[row.drug], spans[row.arg], names.get(row.relation, row.relation))
        if rel.key() in relations:
            summary.adjust(f"{row.path.name}: row merged into an earlier row's relation (same arguments)")
            continue
        relations[rel.key()] = rel
        summary.relations[rel.label] += 1
    if not relations:
        return None
    set_concepts(doc, list(by_tokens.values()), spans_key=spans_key)
    set_relations(doc, relations.values(), source=spans_key)
    summary.entities.update(span.label_ for span in by_tokens.values())
    if len(doc.ents) < len(by_tokens):
        summary.adjust(NOT_IN_ENTS, len(by_tokens) - len(doc.ents))
    return doc


def _mention_span(
    doc: Doc,
    mention: _Mention,
    start: int,
    names: Mapping[str, str],
    by_tokens: Dict[Tuple[int, int, str], Span],
    summary: ConversionSummary,
) -> Span:
    """The entity span for ``mention``; mentions landing on the same tokens share one span."""
    label = names.get(mention.label, mention.label)
    span = doc.char_span(start, start + len(mention.text), label=label, alignment_mode="expand")
    if span.text != mention.text:
        summary.adjust(ALIGNED)
    key = (span.start, span.end, label)
    if key in by_tokens:
        summary.adjust(f"{label}: mention merged into another on the same tokens")
        return by_tokens[key]
    by_tokens[key] = span
    return span


def _negative_docs(
    path: Path,
    nlp: Language,
    by_sentence: Mapping[Tuple[str, str], List[_Row]],
    split: Optional[str],
    split_of: Dict[str, str],
    include: bool,
    spans_key: str,
    summary: ConversionSummary,
) -> List[Tuple[int, int, Doc]]:
    """Docs without entities for the unique ADE-NEG sentences of the split (when ``include``).

    Their ``k`` continues after the PMID's annotated sentences, in file order, so ids do not
    depend on ``split`` or ``include``.
    """
    next_k = Counter(pmid for pmid, _ in by_sentence)
    seen: Set[Tuple[str, str]] = set()
    docs = []
    for line_no, line in enumerate(_lines(path, summary), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split(" ", 2)
        if len(parts) != 3 or parts[1] != "NEG" or not parts[0].isdigit() or not parts[2].strip():
            summary.report(CorpusFormatError(path, line_no, "not a 'PMID NEG sentence' line"))
            continue
        pmid, _, sentence = parts
        if (pmid, sentence) in by_sentence:
            summary.skip(f"{NEG_FILE}: sentence also in a .rel file (annotated Doc kept)")
            continue
        duplicate = (pmid, sentence) in seen
        seen.add((pmid, sentence))
        if not duplicate:
            next_k[pmid] += 1
        if not _selected(pmid, split, split_of, summary, Counter({NEG_FILE: 1})):
            continue
        if not include:
            summary.skip(NEG_EXCLUDED)
        elif duplicate:
            summary.adjust(NEG_DUPLICATE)
        else:
            doc = nlp.make_doc(sentence)
            set_concepts(doc, [], spans_key=spans_key)
            doc._.doc_id = f"{pmid}-{next_k[pmid] - 1}"
            docs.append((int(pmid), next_k[pmid] - 1, doc))
    return docs
