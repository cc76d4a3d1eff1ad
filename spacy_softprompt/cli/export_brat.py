"""``export-brat``: a ``.spacy`` DocBin -> one brat ``.txt``/``.ann`` pair per document.

Without ``--pipeline`` the annotations stored in the file (gold) are written:
for Docs converted from brat, the same annotations as the source (fragments
of discontinuous spans, ``E``, ``R``, ``*`` and ``A`` lines; ids renumbered).
With it, the pipeline runs over the texts (a progress bar on stderr) and its
predictions are written, so the folder can go to ``score-brat`` or to the
n2c2 2018 evaluation script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, List

from . import (CLIError, add_mapping_argument, gold_spans_key, load_pipeline, parse_mapping, read_docbin,
               softprompt_names)

if TYPE_CHECKING:
    from spacy.tokens import Doc

HELP = "Write a .spacy file (gold, or a pipeline's predictions) as brat .txt/.ann files."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="DocBin (.spacy) with the documents")
    parser.add_argument("output_dir", type=Path, help="folder for the .txt/.ann files")
    parser.add_argument("--pipeline", help="spaCy pipeline (path or package) whose predictions to export")
    add_mapping_argument(parser, "--relation-map", "rename relation labels on the way out, e.g. Drug-AE=ADE-Drug")
    parser.add_argument(
        "--tail-first",
        action="store_true",
        help="write the relation tail as Arg1 (n2c2 2018: ADE-Drug Arg1:<ADE> Arg2:<Drug>)",
    )
    parser.add_argument(
        "--spans-key",
        help="span group holding the concepts (default: the pipeline's, or 'softprompt' in a gold file; doc.ents "
             "when a document has none)",
    )


def run(args: argparse.Namespace) -> int:
    import spacy
    from tqdm import tqdm

    from ..corpora.brat import write_brat
    from .evaluate import concepts_key

    relation_map = parse_mapping(args.relation_map, "--relation-map")
    nlp = load_pipeline(args.pipeline) if args.pipeline else spacy.blank("en")
    docs = read_docbin(args.data, nlp.vocab)
    if not docs:
        raise CLIError(f"{args.data} holds no documents: nothing to export")
    if not args.pipeline:
        key = gold_spans_key(docs, args.data, args.spans_key)
    names = _file_names(docs)
    _check_output(args.output_dir, names)
    # a renamed label the pipeline cannot predict (or the data lacks) is a typo: said before predicting
    labels = ({label for name in softprompt_names(nlp) for label in nlp.get_pipe(name).relation_labels}
              if args.pipeline else {relation.label for doc in docs for relation in doc._.relations})
    unmatched = sorted(set(relation_map) - labels)
    if unmatched:
        raise CLIError(f"--relation-map {' '.join(unmatched)}: no such relation label in the "
                       f"{'pipeline' if args.pipeline else 'data'} ({', '.join(sorted(labels)) or 'none'})")
    if args.pipeline:  # the long part: a progress bar on stderr
        key = concepts_key(nlp, args.pipeline, args.spans_key)
        texts = (doc.text for doc in docs)
        bar = tqdm(nlp.pipe(texts), total=len(docs), desc="predict", unit="doc", file=sys.stderr)
        predicted = list(bar)
        for doc, name in zip(predicted, names):
            doc._.doc_id = name
        docs = predicted
    for doc, name in tqdm(list(zip(docs, names)), desc="write", unit="doc", file=sys.stderr, disable=len(docs) < 200):
        write_brat(
            doc,
            args.output_dir / f"{name}.ann",
            txt_path=args.output_dir / f"{name}.txt",
            spans_key=key,
            relation_map=relation_map,
            tail_first=args.tail_first,
        )
    what = f"predictions of {args.pipeline}" if args.pipeline else "gold annotations"
    print(f"{len(docs)} documents ({what}) -> {args.output_dir}", file=sys.stderr)
    return 0


def _check_output(folder: Path, names: List[str]) -> None:
    """An output folder may hold the files of a run over the same documents (they are replaced), but not other
    .ann files, which score-brat or the n2c2 script would then score beside them."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise CLIError(f"{folder} is a file; pass a folder for the .txt/.ann files")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*.ann")}
    others = sorted(present - {f"{name}.ann" for name in names})
    if others:
        raise CLIError(f"{folder} already holds {len(others)} .ann file(s) this export does not write (e.g. "
                       f"{others[0]}), which a scorer would read beside the new ones; pass an empty or new folder")


def _file_names(docs: List["Doc"]) -> List[str]:
    """``doc._.doc_id`` (a relative path, kept inside the output folder), else the document's index."""
    names = []
    for index, doc in enumerate(docs):
        name = str(doc._.doc_id) if doc._.doc_id else str(index)
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or "\\" in name:
            raise CLIError(f"document {index}: doc_id {name!r} is not a relative path; cannot name its files")
        names.append(name)
    if len(set(names)) != len(names):
        raise CLIError("two documents share a doc_id; their brat files would overwrite each other")
    return names
