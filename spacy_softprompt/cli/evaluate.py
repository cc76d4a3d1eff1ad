"""``evaluate``: run a trained pipeline on gold documents and score it, strict and lenient.

The gold texts are run through the pipeline from scratch (nothing of the gold
annotation reaches it), then scored with :mod:`spacy_softprompt.scoring`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from . import CLIError, write_scores

HELP = "Score a trained pipeline on gold data (.spacy): concepts and relations, strict and lenient."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="pipeline folder (e.g. training/model-best) or package name")
    parser.add_argument("data", type=Path, help="gold documents, a DocBin .spacy file saved with user data")
    parser.add_argument("--output", type=Path, help="write the scores as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the score table as markdown here")
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU to run on; -1 (default) for CPU")
    parser.add_argument("--spans-key", default="softprompt", help="span group holding the concepts")
    parser.add_argument("--batch-size", type=int, default=16, help="documents per nlp.pipe batch")
    parser.add_argument(
        "--concept-types",
        nargs="+",
        metavar="TYPE",
        help="score only these concept types and relations between them (cross-corpus transfer)",
    )


def run(args: argparse.Namespace) -> int:
    import spacy
    from spacy.tokens import Doc, DocBin
    from tqdm import tqdm

    from ..scoring import format_table, score_concepts_and_relations

    if not args.data.is_file():
        raise CLIError(
            f"Gold data not found: {args.data}. Pass a .spacy file of gold documents "
            "(e.g. corpus/test.spacy, written by `python -m spacy_softprompt convert`)."
        )
    if not Path(args.pipeline).exists() and not spacy.util.is_package(args.pipeline):
        raise CLIError(
            f"Pipeline not found: {args.pipeline}. Pass the folder written by `spacy train` "
            "(e.g. training/model-best) or the name of an installed pipeline package."
        )
    if args.gpu_id >= 0:
        try:
            spacy.require_gpu(args.gpu_id)
        except ValueError as err:
            raise CLIError(f"Cannot use GPU {args.gpu_id} ({err}); run with --gpu-id -1 for CPU.") from err
    nlp = spacy.load(args.pipeline)
    try:
        gold: List[Doc] = list(DocBin().from_disk(args.data).get_docs(nlp.vocab))
    except ValueError as err:
        raise CLIError(f"{args.data} is not a readable DocBin (.spacy) file: {err}") from err

    start = time.perf_counter()
    texts = (doc.text for doc in gold)
    batches = nlp.pipe(texts, batch_size=args.batch_size)
    predicted = list(tqdm(batches, total=len(gold), desc="evaluate", unit="doc", file=sys.stderr))
    seconds = time.perf_counter() - start

    scores: Dict[str, Any] = score_concepts_and_relations(
        zip(predicted, gold), spans_key=args.spans_key, concept_types=args.concept_types
    )
    words = sum(len(doc) for doc in predicted)
    scores["documents"] = len(gold)
    scores["speed"] = words / seconds if seconds > 0 else 0.0

    print(format_table(scores))
    print(f"\n{len(gold)} documents, {scores['speed']:.0f} words/s")
    write_scores(scores, args.output, args.markdown)
    return 0
