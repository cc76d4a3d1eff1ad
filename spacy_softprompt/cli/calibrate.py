"""``calibrate``: thresholds for concept types added by description, from unlabelled notes.

The chosen types are predicted on the notes down to ``--floor`` (concepts only: a relation's
argument that no concept query found is added at prediction, on top); each gets the threshold at
which it is found as often as a concept type occurs (``--density``, or the median type of
``--reference`` gold documents, times ``--scale``), never above the component's threshold
(:mod:`spacy_softprompt.calibration`). The pipeline is saved with them as its
``label_thresholds``; nothing else changes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence

from . import CLIError, at_least_one, check_output_files, gpu_id, load_pipeline, positive, read_docbin, softprompt_names

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

    from ..component import SoftPromptIE

HELP = "Choose thresholds for concept types added by description, on unlabelled notes; save the pipeline with them."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..calibration import DEFAULT_FLOOR
    from .evaluate import probability

    parser.add_argument("pipeline", help="pipeline folder or package name, with the types added (add_label, new_labels)")
    parser.add_argument("notes", type=Path,
                        help="unlabelled notes of the kind the types will be found in: a folder of .txt files, "
                             ".jsonl (one {\"id\", \"text\"} per line), .parquet or .spacy (its annotations unused)")
    parser.add_argument("output", type=Path, help="folder to save the calibrated pipeline to")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--density", type=positive, metavar="PER_100_TOKENS",
                     help="how often a type is expected: concepts per 100 tokens")
    how.add_argument("--reference", type=Path, nargs="+", metavar="GOLD",
                     help="labelled .spacy files (e.g. the training data): the density of their median type")
    parser.add_argument("--scale", type=positive, default=1.0, help="multiplies the density (default 1)")
    parser.add_argument("--labels", nargs="+", metavar="TYPE",
                        help="the types to calibrate (default: the types --corpus annotates)")
    parser.add_argument("--corpus", metavar="NAME",
                        help="tag the notes with this corpus (doc._.corpus), as they will be at prediction")
    parser.add_argument("--floor", type=probability, default=DEFAULT_FLOOR,
                        help=f"the lowest threshold a type can get (default {DEFAULT_FLOOR}; at least 1e-9)")
    parser.add_argument("--spans-key", help="the reference's span group (default: the component's)")
    parser.add_argument("--batch-size", type=at_least_one, default=16, help="notes per nlp.pipe batch")
    parser.add_argument("--gpu-id", type=gpu_id, default=-1, help="GPU to run on; -1 (default) for CPU")
    parser.add_argument("--report", type=Path, help="write each type's threshold and predicted count as JSON here")


def run(args: argparse.Namespace) -> int:
    from ..annotate.notes import read_notes
    from ..calibration import MIN_FLOOR, density_thresholds, gold_density, predicted_counts, wanted_count

    nlp = load_pipeline(args.pipeline, args.gpu_id)
    name, pipe = softprompt_pipe(nlp, str(args.pipeline))
    if not MIN_FLOOR <= args.floor <= pipe.cfg["threshold"]:
        raise CLIError(f"--floor {args.floor}: between {MIN_FLOOR} (a saved threshold keeps 10 decimals) and the "
                       f"component's threshold, {pipe.cfg['threshold']}")
    labels = labels_to_calibrate(pipe, args.labels, args.corpus)
    check_output_files(report=args.report)
    if args.output.is_file():
        raise CLIError(f"{args.output} is a file: the calibrated pipeline is saved as a folder")
    key = args.spans_key or pipe.cfg["spans_key"]
    if args.density is not None:
        density = args.density / 100
    else:
        try:
            density = gold_density((doc for path in args.reference for doc in read_docbin(path, nlp.vocab)), key)
        except ValueError as err:
            raise CLIError(f"--reference {' '.join(map(str, args.reference))}: {err} (pass --spans-key or --density)"
                           ) from err
    density *= args.scale

    if not args.notes.exists():
        raise CLIError(f"notes not found: {args.notes}. Pass a folder of .txt files, a .jsonl, .parquet or .spacy file")
    try:  # a bad line or file is named in the error, as annotate names it
        notes = list(read_notes(args.notes))
    except ValueError as err:
        raise CLIError(str(err)) from err
    texts = [note.text for note in notes if note.text is not None]
    skipped = len(notes) - len(texts)
    if not texts:
        raise CLIError(f"{args.notes}: no note with text to calibrate on")
    predicted = predict_down_to(nlp, pipe, texts, labels, args.floor, args.corpus, args.batch_size)
    thresholds = density_thresholds(predicted, pipe.cfg["spans_key"], labels, density, args.floor,
                                    pipe.cfg["threshold"])
    counts = predicted_counts(predicted, pipe.cfg["spans_key"], thresholds)
    set_label_thresholds(nlp, name, thresholds)
    nlp.to_disk(args.output)

    tokens = sum(len(doc) for doc in predicted)
    print(f"{len(texts)} notes ({tokens} tokens{f'; {skipped} without text, not used' if skipped else ''}); "
          f"density {100 * density:.3f} per 100 tokens: about {wanted_count(predicted, density)} per type")
    print("| type | threshold | found in the notes |\n| --- | ---: | ---: |")
    for label in labels:
        print(f"| {label} | {thresholds[label]:.4g} | {counts[label]} |")
    print(f"saved to {args.output} (components.{name}.label_thresholds)")
    if args.report:
        report = {"density_per_100_tokens": 100 * density, "notes": len(texts), "skipped": skipped, "tokens": tokens,
                  "types": {label: {"threshold": thresholds[label], "found": counts[label]} for label in labels}}
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


def softprompt_pipe(nlp: "Language", pipeline: str) -> "tuple[str, SoftPromptIE]":
    """The pipeline's one softprompt_ie component, with its name."""
    names = softprompt_names(nlp)
    if len(names) != 1:
        raise CLIError(f"{pipeline} has {len(names)} softprompt_ie components; calibrate takes a pipeline with one")
    return names[0], nlp.get_pipe(names[0])


def labels_to_calibrate(pipe: "SoftPromptIE", labels: Optional[Sequence[str]], corpus: Optional[str]) -> List[str]:
    """``--labels``, else the types ``--corpus`` annotates; each a concept type of the component."""
    corpora = pipe.schema.corpora
    if corpus is not None and corpus not in corpora:
        raise CLIError(f"--corpus {corpus!r}: the component knows the corpora {', '.join(sorted(corpora)) or 'none'}")
    if not labels:
        if corpus is None:
            raise CLIError("name the types to calibrate: --labels, or --corpus for the types that corpus annotates")
        labels = [label for label in corpora[corpus] if label in pipe.labels]
    unknown = [label for label in labels if label not in pipe.labels]
    if unknown:
        raise CLIError(f"--labels {', '.join(unknown)}: not concept types of the component "
                       "(add them first: add_label(label, description=...) or the new_labels setting)")
    return list(labels)


def predict_down_to(nlp: "Language", pipe: "SoftPromptIE", texts: Iterable[str], labels: Sequence[str],
                    floor: float, corpus: Optional[str], batch_size: int = 16) -> List["Doc"]:
    """The texts (tagged with ``corpus``) through the pipeline with ``labels`` kept down to
    ``floor``, concepts only (a relation's argument, scored by the relation, is not a concept
    query's find); the component's label thresholds are as before afterwards."""
    from tqdm import tqdm

    from .evaluate import pipeline_input

    inputs = [pipeline_input(nlp, text, corpus) for text in texts]
    saved = dict(pipe.cfg["label_thresholds"])
    pipe.cfg["label_thresholds"] = {**saved, **{label: floor for label in labels}}
    try:
        with pipe.concepts_only():
            return list(tqdm(nlp.pipe(inputs, batch_size=batch_size), total=len(inputs), desc="calibrate",
                             unit="note", file=sys.stderr))
    finally:
        pipe.cfg["label_thresholds"] = saved


def set_label_thresholds(nlp: "Language", name: str, thresholds: Dict[str, Any]) -> None:
    """Give the component these label thresholds, in its cfg and in the pipeline's config (so the
    saved config.cfg says what the component does, and a later edit of it counts as one)."""
    from ..component import BUILT_WITH

    pipe = nlp.get_pipe(name)
    pipe.cfg["label_thresholds"] = {**pipe.cfg["label_thresholds"], **thresholds}
    for config in (nlp.get_pipe_config(name), pipe.cfg[BUILT_WITH]):
        config["label_thresholds"] = dict(pipe.cfg["label_thresholds"])
