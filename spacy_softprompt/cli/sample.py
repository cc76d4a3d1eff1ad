"""``sample``: a reproducible few-shot subset of a ``.spacy`` corpus (K examples per label)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..relations import DEFAULT_SPANS_KEY
from . import CLIError, gold_spans_key, read_docbin

HELP = "Few-shot subset of a .spacy corpus: at least K examples of every concept label."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="DocBin (.spacy) to sample from")
    parser.add_argument("output", type=Path, help="DocBin (.spacy) to write")
    parser.add_argument("--shots", type=int, required=True, help="examples wanted per label (K >= 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--spans-key", help=f"span group holding the concepts (default {DEFAULT_SPANS_KEY!r}; "
                        "doc.ents where a document has none)")


def run(args: argparse.Namespace) -> int:
    from spacy.tokens import DocBin

    from ..sampling import sample_few_shot

    if args.shots < 1:
        raise CLIError(f"--shots must be at least 1, not {args.shots}")
    if args.output.resolve() == args.input.resolve():
        raise CLIError(f"{args.output} is the input: the sample would replace the corpus; write it to another file")
    # user_data carries doc._.relations and doc._.doc_id; both DocBins must keep it.
    docs = read_docbin(args.input)
    if not docs:
        raise CLIError(f"{args.input} holds no documents: nothing to sample from")
    key = gold_spans_key(docs, args.input, args.spans_key)
    sample, report = sample_few_shot(docs, args.shots, args.seed, spans_key=key)
    if not report.available:  # (an empty sample was written, exit 0)
        raise CLIError(f"{args.input}: no concepts in span group {key!r} or doc.ents: nothing to sample by")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    DocBin(store_user_data=True, docs=sample).to_disk(args.output)
    print(f"{report.documents} of {len(docs)} documents, K={args.shots}, seed={args.seed} -> {args.output}")
    print(report.table())
    if report.shortfall:
        print(f"shortfall (fewer than {args.shots} examples exist): {report.shortfall}")
    return 0
