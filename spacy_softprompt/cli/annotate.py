"""``annotate``: a trained pipeline over a folder of ``.txt`` notes or a JSONL table -> JSONL shards.

The output folder holds ``part-00000.jsonl``, ... (``--shard-size`` notes each,
one record per note), ``errors.jsonl`` (notes that could not be annotated, and
why) and ``manifest.json`` (the finished shards). Re-running the same command
after an interruption skips the finished shards; see :mod:`spacy_softprompt.annotate`.
The options that change the records (``--batch-size`` too: it decides which notes
share a backbone pass) must be the same; ``--n-process`` and ``--gpu-id`` may differ.

``SPACY_SOFTPROMPT_ANNOTATE_STOP_AFTER_SHARDS=N`` ends the process abruptly
(``os._exit``, like ``kill -9``) after N shards: how the tests interrupt a run.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict

from . import CLIError, load_pipeline

HELP = "Annotate a folder of .txt notes or a JSONL file into resumable JSONL shards."
STOP_ENV = "SPACY_SOFTPROMPT_ANNOTATE_STOP_AFTER_SHARDS"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="spaCy pipeline: a folder (e.g. training/model-best) or a package name")
    parser.add_argument("input", type=Path, help="a folder of .txt files (recursive) or a .jsonl file")
    parser.add_argument("output_folder", type=Path, help="folder for the shards, errors.jsonl and manifest.json")
    parser.add_argument("--id-column", default="id", help="JSONL field with the note id (default: id)")
    parser.add_argument("--text-column", default="text", help="JSONL field with the note text (default: text)")
    parser.add_argument("--shard-size", type=int, default=1000, help="notes per output shard (default: 1000)")
    parser.add_argument("--max-chars", type=int, default=1_000_000,
                        help="longer notes go to errors.jsonl (default: 1000000)")
    parser.add_argument("--no-text", action="store_true",
                        help="leave the note text out of the records (smaller; read_jsonl then cannot rebuild Docs)")
    parser.add_argument("--batch-size", type=int, default=32, help="notes per nlp.pipe batch (default: 32)")
    parser.add_argument("--n-process", type=int, default=1, help="processes for nlp.pipe (default: 1)")
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU to run on; -1 (default) for CPU")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh, discarding an earlier run's output in the folder (without it, the same "
                             "command resumes that run and a different one is refused)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..annotate import ShardWriter, annotate_notes, count_notes, read_notes
    from .evaluate import concepts_key

    if not args.input.exists():
        raise CLIError(f"input not found: {args.input}. Pass a folder of .txt files or a .jsonl file.")
    if args.shard_size < 1 or args.max_chars < 1:
        raise CLIError("--shard-size and --max-chars must be at least 1")
    total = count_notes(args.input)
    if total == 0:
        raise CLIError(f"{args.input} holds no notes (no .txt files, or no JSONL records)")
    pipeline = Path(args.pipeline).resolve() if Path(args.pipeline).exists() else args.pipeline
    decisive = ("id_column", "text_column", "shard_size", "max_chars", "no_text", "batch_size")
    options = {name: getattr(args, name) for name in decisive}
    settings: Dict[str, Any] = {"input": str(args.input.resolve()), "pipeline": str(pipeline), "options": options}
    writer = ShardWriter(args.output_folder, settings)
    earlier = writer.existing()
    if earlier is not None and args.overwrite:
        writer.clear()
    elif earlier is not None and {k: earlier.get(k) for k in settings} != settings:
        raise CLIError(
            f"{args.output_folder} holds the output of another run (input {earlier.get('input')}, pipeline "
            f"{earlier.get('pipeline')}, options {earlier.get('options')}); pass --overwrite to replace it, "
            "or another output folder."
        )
    elif earlier is not None:
        writer.resume(earlier)
    skipped = len(writer.shards)
    first = skipped * args.shard_size

    nlp = load_pipeline(args.pipeline, args.gpu_id)
    spans_key = concepts_key(nlp, args.pipeline, None)
    notes = read_notes(args.input, id_column=args.id_column, text_column=args.text_column,
                       max_chars=args.max_chars, skip=first)
    stop_after = int(os.environ.get(STOP_ENV, "0"))

    def on_shard() -> None:
        if stop_after and len(writer.shards) - skipped >= stop_after:
            os._exit(1)

    with tqdm(total=max(total - first, 0), unit="note", desc="annotate", file=sys.stderr) as bar:
        for read in annotate_notes(nlp, notes, writer, args.shard_size, spans_key=spans_key,
                                   with_text=not args.no_text, batch_size=args.batch_size,
                                   n_process=args.n_process, on_shard=on_shard):
            bar.update(read - bar.n)
        bar.update(bar.total - bar.n)
    annotated = sum(shard["notes"] for shard in writer.shards)
    failed = sum(shard["errors"] for shard in writer.shards)
    resumed = f" ({skipped} finished shard(s) of an earlier run kept)" if skipped else ""
    print(f"{annotated + failed} notes read, {annotated} annotated, {failed} failed (errors.jsonl) -> "
          f"{args.output_folder}{resumed}", file=sys.stderr)
    return 0
