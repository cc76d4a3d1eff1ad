"""Reading a brat folder: files, encodings and lines, before :mod:`.brat_ann` resolves them."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Collection, Dict, Iterable, List, Optional, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.vocab import Vocab
from tqdm import tqdm

from ..relations import DEFAULT_SPANS_KEY
from . import brat_reasons as why
from .brat_ann import AnnFile
from .brat_lines import AnnLine, Options, broken_line
from .summary import ConversionSummary, CorpusFormatError, read_utf8

BRAT_UTF8 = "brat offsets count the characters of UTF-8 text, so "

TEXT_CHECKS = ("strict", "tolerant", "offsets")


def read_brat(
    source: Union[str, Path],
    nlp: Union[Language, Vocab],
    *,
    label_map: Optional[Dict[str, str]] = None,
    relation_map: Optional[Dict[str, str]] = None,
    head_types: Optional[Iterable[str]] = None,
    lenient: bool = False,
    spans_key: str = DEFAULT_SPANS_KEY,
    text_check: str = "tolerant",
    progress: bool = False,
    documents: Optional[Collection[str]] = None,
) -> Tuple[List[Doc], ConversionSummary]:
    """Read a brat folder (recursively: every ``.ann`` with a ``.txt`` beside it) or one ``.ann``.

    ``head_types`` (labels after ``label_map``): when only Arg2 of an ``R`` line
    has one of these types, the arguments are swapped so the trigger is the head
    (n2c2 2018 writes ``Strength-Drug Arg1:<Strength> Arg2:<Drug>``).
    ``lenient`` records malformed lines in the summary instead of raising.
    ``text_check``: ``"strict"``, ``"tolerant"`` or ``"offsets"`` (see
    :mod:`.brat`). ``progress`` shows a progress bar on stderr. ``doc._.doc_id``
    is the ``.ann`` path relative to ``source``, without its suffix. ``documents``: only
    these document ids are read (a split); every other ``.ann`` is counted in the summary as a
    document of another split.
    """
    if text_check not in TEXT_CHECKS:
        raise ValueError(f"text_check must be one of {TEXT_CHECKS}, not {text_check!r}")
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"brat input not found: {source}")
    if isinstance(nlp, Vocab):
        nlp = spacy.blank("en", vocab=nlp)
    options = Options(
        label_map=dict(label_map or {}),
        relation_map=dict(relation_map or {}),
        head_types=set(head_types or ()),
        text_check=text_check,
        spans_key=spans_key,
    )
    summary = ConversionSummary(source=str(source), lenient=lenient)
    if source.is_dir():
        ann_paths = sorted(source.rglob("*.ann"))
        paired = {p.with_suffix(".txt") for p in ann_paths}
        lone_txt = sum(1 for t in source.rglob("*.txt") if t not in paired)
        if lone_txt:
            summary.skip(why.TXT_WITHOUT_ANN, lone_txt)
        root = source
    elif source.suffix != ".ann":
        raise ValueError(f"brat input {source}: not a folder nor an .ann file (its .txt is read beside it)")
    else:
        ann_paths = [source]
        root = source.parent
    if documents is not None:
        wanted = set(documents)
        selected = [p for p in ann_paths if p.relative_to(root).with_suffix("").as_posix() in wanted]
        if len(selected) < len(ann_paths):
            summary.skip(why.OTHER_SPLIT, len(ann_paths) - len(selected))
        ann_paths = selected
    docs: List[Doc] = []
    for ann_path in tqdm(ann_paths, desc="brat", unit="doc", disable=not progress, file=sys.stderr):
        doc = _read_pair(ann_path, nlp, options, summary)
        if doc is not None:
            doc._.doc_id = ann_path.relative_to(root).with_suffix("").as_posix()
            summary.documents += 1
            docs.append(doc)
    return docs, summary


def _read_pair(ann_path: Path, nlp: Language, options: Options, summary: ConversionSummary) -> Optional[Doc]:
    """One document, or None (reported) when its files cannot be read."""
    txt_path = ann_path.with_suffix(".txt")
    if not txt_path.is_file():
        summary.report(CorpusFormatError(ann_path, None, "no .txt beside this .ann (a document is a .txt/.ann pair)"))
        return None
    text = read_utf8(txt_path, summary, BRAT_UTF8)
    ann = read_utf8(ann_path, summary, BRAT_UTF8)
    if text is None or ann is None:
        return None
    if ann.startswith("\ufeff"):  # a BOM in the .ann is not an annotation; in the .txt it is a character
        ann = ann[1:]
        summary.adjust(why.ANN_BOM)
    doc = nlp.tokenizer(text)  # tokens only: no max_length, which guards the parser's memory
    AnnFile(ann_path, doc, text, options, summary).convert(split_lines(ann_path, ann, summary))
    return doc


def split_lines(path: Path, ann: str, summary: ConversionSummary) -> List[AnnLine]:
    """Annotation lines (``ID<TAB>...``, a trailing ``\\r`` dropped). Lines that are not annotation
    lines right after a T line are kept as its possible continuation (a text field crossing a
    line break); the others are reported as broken lines."""
    lines: List[AnnLine] = []
    continuing = False
    for number, raw in enumerate(ann.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        ann_id, sep, body = line.partition("\t")
        if sep and ann_id and not any(c.isspace() for c in ann_id):
            lines.append(AnnLine(number, ann_id, body))
            continuing = ann_id.startswith("T")
        elif continuing:
            lines[-1].continued.append((number, line))
        elif line.strip():
            summary.report(CorpusFormatError(path, number, broken_line(line)))
    for line in lines:  # blank lines after a T line separate annotations: not a continuation
        while line.continued and not line.continued[-1][1].strip():
            line.continued.pop()
    return lines
