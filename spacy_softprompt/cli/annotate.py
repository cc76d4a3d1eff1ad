"""``annotate``: a trained pipeline over notes (folder of .txt, JSONL, Parquet, DocBin) -> JSONL, Parquet or brat.

Locally (the default engine) the output folder holds shards of ``--shard-size``
notes (``part-00000.jsonl`` / ``.parquet``, or the brat pairs), ``errors.jsonl``
(notes that could not be annotated, and why) and ``manifest.json`` (the finished
shards). Re-running the same command after an interruption skips the finished
shards; see :mod:`spacy_softprompt.annotate.shards`. The options that change
the records (``--batch-size`` too: it decides which notes share a backbone pass)
must be the same; ``--n-process`` and ``--gpu-id`` may differ.

``--engine ray`` runs the job on Ray Data (:mod:`spacy_softprompt.annotate.ray_engine`).

``SPACY_SOFTPROMPT_ANNOTATE_STOP_AFTER_SHARDS=N`` ends the process abruptly
(``os._exit``, like ``kill -9``) after N shards: how the tests interrupt a run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from ..annotate import FORMATS
from . import CLIError, add_mapping_argument, at_least_one, gpu_id, load_pipeline, parse_mapping

if TYPE_CHECKING:
    from ..annotate import Note

HELP = "Annotate notes (.txt folder, JSONL, Parquet, DocBin) into resumable JSONL, Parquet or brat output."
STOP_ENV = "SPACY_SOFTPROMPT_ANNOTATE_STOP_AFTER_SHARDS"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", help="spaCy pipeline: a folder (e.g. training/model-best) or a package name")
    parser.add_argument("input", type=Path,
                        help="a folder of .txt files (recursive), a .jsonl or .parquet table, or a .spacy DocBin")
    parser.add_argument("output_folder", type=Path, help="folder for the shards, errors.jsonl and manifest.json")
    parser.add_argument("--format", choices=FORMATS, default="jsonl",
                        help="jsonl (one record per note), parquet (the same records as a table) or brat "
                             "(<id>.txt + <id>.ann per note); default: jsonl")
    parser.add_argument("--tail-first", action="store_true",
                        help="brat: write each relation's tail as Arg1 (n2c2 2018: Arg1 the attribute, Arg2 the Drug)")
    add_mapping_argument(parser, "--relation-map", "brat: rename relation labels on the way out, e.g. Drug-AE=ADE-Drug")
    parser.add_argument("--id-column", default="id", help="JSONL field or Parquet column with the note id (default: id)")
    parser.add_argument("--text-column", default="text", help="JSONL field or Parquet column with the note text (default: text)")
    parser.add_argument("--shard-size", type=at_least_one, default=1000, help="notes per output shard (default: 1000)")
    parser.add_argument("--max-chars", type=at_least_one, default=1_000_000,
                        help="longer notes go to errors.jsonl (default: 1000000)")
    parser.add_argument("--no-text", action="store_true",
                        help="leave the note text out of the records (smaller; read_annotations then cannot rebuild Docs)")
    parser.add_argument("--batch-size", type=at_least_one, default=32, help="notes per nlp.pipe batch (default: 32)")
    parser.add_argument("--n-process", type=at_least_one, default=1, help="processes for nlp.pipe (default: 1)")
    parser.add_argument("--gpu-id", type=gpu_id, default=-1, help="GPU to run on; -1 (default) for CPU")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local (default): this process and --n-process workers, resumable; ray: Ray Data "
                             "actors, on this machine or the cluster at --ray-address")
    parser.add_argument("--ray-address", default=None,
                        help="Ray cluster to join (e.g. auto, ray://head:10001); default: start Ray here")
    parser.add_argument("--workers", type=at_least_one, default=1, help="Ray actors, each holding the pipeline (default: 1)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="GPUs per Ray actor (1 = one actor per GPU); default: 0, CPU")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh, discarding an earlier run's output in the folder (without it, the same "
                             "command resumes that run and a different one is refused)")


def run(args: argparse.Namespace) -> int:
    from ..annotate import clear_output, count_notes, read_manifest, unlisted_output

    if not args.input.exists():
        raise CLIError(f"input not found: {args.input}. Pass a folder of .txt files, a .jsonl or .parquet "
                       "table, or a .spacy DocBin.")
    if args.output_folder.exists() and not args.output_folder.is_dir():
        raise CLIError(f"{args.output_folder} is a file; the output is a folder")
    if args.format == "brat" and args.input.is_dir() and args.output_folder.resolve().is_relative_to(args.input.resolve()):
        if args.output_folder.resolve() == args.input.resolve():
            raise CLIError(f"{args.output_folder} is the input folder: each note's .txt written there would replace the "
                           "note itself; choose another output folder (it gets a copy of each .txt beside its .ann)")
        raise CLIError(f"{args.output_folder} is inside the input folder {args.input}: the .txt files written there "
                       "would be read as notes by the next run; choose an output folder outside it")
    brat_only = args.tail_first or args.relation_map
    if brat_only and args.format != "brat":
        raise CLIError("--tail-first and --relation-map are options of --format brat")
    if args.engine == "local" and (args.workers != 1 or args.gpus_per_worker or args.ray_address):
        raise CLIError("--workers, --gpus-per-worker and --ray-address are options of --engine ray; the local "
                       "engine takes --n-process and --gpu-id")
    if args.format == "parquet":  # (Parquet input says the same when it is read)
        try:
            import pyarrow  # noqa: F401
        except ImportError as err:
            raise CLIError("Parquet needs pyarrow: pip install 'spacy-softprompt[parquet]'") from err
    total = count_notes(args.input)
    if total == 0:
        raise CLIError(f"{args.input} holds no notes")
    pipeline = Path(args.pipeline).resolve() if Path(args.pipeline).exists() else args.pipeline
    decisive = ("id_column", "text_column", "shard_size", "max_chars", "no_text", "batch_size", "format",
                "tail_first", "relation_map")
    options = {name: getattr(args, name) for name in decisive}
    settings: Dict[str, Any] = {"input": str(args.input.resolve()), "pipeline": str(pipeline),
                                "pipeline_sha256": pipeline_digest(pipeline), "options": options}
    earlier = None
    if args.overwrite:  # a Ray run cut short left no manifest, but its files
        clear_output(args.output_folder)
    elif unlisted := unlisted_output(args.output_folder):
        raise CLIError(f"{args.output_folder} holds records of a run that left no manifest ({', '.join(unlisted[:3])}"
                       f"{', ...' if len(unlisted) > 3 else ''}; a Ray run cut short?): they would be read with this "
                       "run's. Pass --overwrite to remove them, or another output folder.")
    elif (earlier := read_manifest(args.output_folder)) is not None and ({k: earlier.get(k) for k in settings} != settings or args.engine == "ray"
                                  or earlier.get("engine") == "ray"):
        changed = (" (its files changed since: retrained or replaced)" if earlier.get("pipeline") == settings["pipeline"]
                   and earlier.get("pipeline_sha256") != settings["pipeline_sha256"] else "")
        raise CLIError(
            f"{args.output_folder} holds the output of another run (input {earlier.get('input')}, pipeline "
            f"{earlier.get('pipeline')}{changed}, options {earlier.get('options')}, engine "
            f"{earlier.get('engine', 'local')}; a Ray run is not resumed); pass --overwrite to replace it, "
            "or another output folder."
        )
    start = time.perf_counter()
    if args.engine == "ray":
        (annotated, failed), kept = _run_ray(args, pipeline, settings), ""
    else:
        annotated, failed, kept = _run_local(args, settings, earlier, total)
    seconds = time.perf_counter() - start
    print(f"{annotated + failed} notes read, {annotated} annotated, {failed} failed (errors) -> "
          f"{args.output_folder}; {seconds:.1f} s, {annotated / max(seconds, 1e-9):.1f} notes/s{kept}",
          file=sys.stderr)
    return 0


def pipeline_digest(pipeline: Any) -> str:
    """SHA-256 over a pipeline folder's files (relative path, size, modification time: a stored
    backbone may be gigabytes), so that a run is not resumed with a pipeline retrained or replaced
    in place (the records would mix two models' predictions); for an installed package, its name
    and version."""
    import hashlib

    if not isinstance(pipeline, Path):
        from spacy.util import get_package_version

        return hashlib.sha256(f"{pipeline}=={get_package_version(str(pipeline))}".encode()).hexdigest()
    files = sorted(p for p in pipeline.rglob("*") if p.is_file())
    stamps = [(p.relative_to(pipeline).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(repr(stamps).encode()).hexdigest()


def _run_local(args: argparse.Namespace, settings: Dict[str, Any], earlier: Optional[Dict[str, Any]],
               total: int) -> Tuple[int, int, str]:
    """Shards in this process (and ``--n-process`` workers); resumes ``earlier``'s run. Returns
    this run's counts of annotated and failed notes, and what it kept of the earlier run."""
    from tqdm import tqdm

    from ..annotate import ShardWriter, annotate_notes, read_notes
    from ..annotate.shards import ResumeRefused
    from .evaluate import concepts_key

    if args.n_process > 1:  # workers are forked after the tokenizer ran: its own threads would warn and stop
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    nlp = load_pipeline(args.pipeline, args.gpu_id)
    brat = {"tail_first": args.tail_first, "relation_map": parse_mapping(args.relation_map, "--relation-map")}
    writer = ShardWriter(args.output_folder, settings, args.format, spans_key=concepts_key(nlp, args.pipeline, None),
                         with_text=not args.no_text, brat_options=brat)

    def read_in(shards: List[Dict[str, Any]]) -> int:
        return sum(shard["notes"] + shard["errors"] for shard in shards)

    notes: Iterator[Note] = read_notes(args.input, id_column=args.id_column, text_column=args.text_column,
                                       max_chars=args.max_chars)
    if earlier is not None:
        shards = earlier["shards"]
        # the input grew after a run that ended on a short shard: fill it as one run would
        reopen = bool(shards) and read_in(shards[-1:]) < args.shard_size and total > read_in(shards)
        try:
            notes = writer.resume(shards, notes, reopen_last=reopen)
        except ResumeRefused as err:
            raise CLIError(f"{err}. Pass --overwrite to start afresh, or another output folder.") from err
    skipped = len(writer.shards)
    kept = [sum(shard[count] for shard in writer.shards) for count in ("notes", "errors")]
    first = read_in(writer.shards)
    stop_after = int(os.environ.get(STOP_ENV, "0"))

    def on_shard() -> None:
        if stop_after and len(writer.shards) - skipped >= stop_after:
            os._exit(1)

    with tqdm(total=max(total - first, 0), unit="note", desc="annotate", file=sys.stderr) as bar:
        for read in annotate_notes(nlp, notes, writer, args.shard_size, batch_size=args.batch_size,
                                   n_process=args.n_process, on_shard=on_shard):
            bar.update(read - bar.n)
        bar.update(bar.total - bar.n)
    annotated = sum(shard["notes"] for shard in writer.shards) - kept[0]
    failed = sum(shard["errors"] for shard in writer.shards) - kept[1]
    resumed = (f"; kept from an earlier run: {skipped} finished shard(s), {kept[0]} notes annotated, "
               f"{kept[1]} failed" if skipped else "")
    return annotated, failed, resumed


def _run_ray(args: argparse.Namespace, pipeline: Any, settings: Dict[str, Any]) -> Tuple[int, int]:
    """The job on Ray Data: ``--workers`` actors, on this machine or at ``--ray-address``."""
    from ..annotate.ray_engine import annotate_with_ray

    if args.format == "brat" or args.n_process != 1 or args.gpu_id != -1:
        raise CLIError("--engine ray writes jsonl or parquet; it takes --workers and --gpus-per-worker "
                       "instead of --n-process and --gpu-id")
    try:
        import ray  # noqa: F401
    except ImportError as err:
        raise CLIError("--engine ray needs Ray: pip install 'spacy-softprompt[ray]'") from err
    counts = annotate_with_ray(
        str(pipeline), args.input, args.output_folder, settings, output_format=args.format,
        address=args.ray_address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
        batch_size=args.batch_size, id_column=args.id_column, text_column=args.text_column,
        max_chars=args.max_chars, with_text=not args.no_text)
    return counts["notes"], counts["errors"]
