"""``score-brat``: score a folder of brat system output against a folder of brat gold.

The counterpart of the n2c2 2018 track 2 script, with this package's scorer:
both folders are read by the package's brat reader, documents are paired by
``doc._.doc_id`` (the path relative to the folder, without extension), and every gold document
is scored. A gold document with no system document counts as a system that
found nothing there (all its gold is FN); a system document with no gold one
is reported and not scored. Both are warned about on stderr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

from . import CLIError, write_scores

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

    from ..corpora.summary import ConversionSummary

HELP = "Score brat system output against brat gold (.txt/.ann folders), strict and lenient."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gold_dir", type=Path, help="folder of gold .txt/.ann files")
    parser.add_argument("system_dir", type=Path, help="folder of system .txt/.ann files, same file names")
    parser.add_argument("--output", type=Path, help="write the scores as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the score table as markdown here")


def _char_pipeline() -> "Language":
    """A blank pipeline with one token per character: every brat offset is then a token
    boundary, so no span is moved to fit a tokenizer (the n2c2 script compares raw offsets)."""
    import spacy
    from spacy.tokens import Doc

    nlp = spacy.blank("en")
    nlp.tokenizer = lambda text: Doc(nlp.vocab, words=list(text), spaces=[False] * len(text))
    return nlp


def _read(folder: Path, nlp: "Language", what: str) -> Tuple[Dict[str, "Doc"], "ConversionSummary"]:
    from ..corpora.brat import read_brat
    from ..corpora.summary import CorpusFormatError

    if not folder.is_dir():
        raise CLIError(f"{what} folder not found: {folder}. Pass a folder of brat .txt/.ann files.")
    try:
        docs, summary = read_brat(folder, nlp)
    except CorpusFormatError as err:
        raise CLIError(f"cannot read the {what} folder: {err}") from err
    by_id: Dict[str, "Doc"] = {}
    for doc in docs:
        if doc._.doc_id in by_id:
            raise CLIError(f"{what} folder {folder} has two documents named {doc._.doc_id!r}.")
        by_id[doc._.doc_id] = doc
    for reason, n in sorted(summary.not_converted.items()):
        print(f"warning: {what}: {n} annotation(s) not scored: {reason}", file=sys.stderr)
    return by_id, summary


def run(args: argparse.Namespace) -> int:
    from ..scoring import format_table, score_concepts_and_relations

    nlp = _char_pipeline()
    gold, gold_summary = _read(args.gold_dir, nlp, "gold")
    system, system_summary = _read(args.system_dir, nlp, "system")
    if not gold:
        raise CLIError(f"No documents in the gold folder {args.gold_dir} (expected .txt/.ann pairs).")

    missing = sorted(gold.keys() - system.keys())
    only_system = sorted(system.keys() - gold.keys())
    for doc_id in missing:
        print(f"warning: {doc_id}: no system document; all its gold annotations count as FN", file=sys.stderr)
    for doc_id in only_system:
        print(f"warning: {doc_id}: in the system folder only; not scored (no gold)", file=sys.stderr)

    pairs: List[Tuple["Doc", "Doc"]] = []
    for doc_id, gold_doc in sorted(gold.items()):
        system_doc = system[doc_id] if doc_id in system else nlp.make_doc(gold_doc.text)
        if system_doc.text != gold_doc.text:
            raise CLIError(f"{doc_id}: gold and system .txt files differ; offsets cannot be compared.")
        pairs.append((system_doc, gold_doc))

    scores: Dict[str, Any] = score_concepts_and_relations(pairs)
    scores["documents"] = len(pairs)
    scores["missing_in_system"] = missing
    scores["only_in_system"] = only_system
    scores["gold_conversion"] = gold_summary.to_dict()
    scores["system_conversion"] = system_summary.to_dict()

    print(format_table(scores))
    print(f"\n{len(pairs)} gold documents, {len(missing)} without system output")
    write_scores(scores, args.output, args.markdown)
    return 0
