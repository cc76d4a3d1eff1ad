"""``annotate --engine ray``: the same annotation as a Ray Data job, on this machine or a cluster.

The notes are read with Ray Data's sources (``read_json``, ``read_parquet``,
``read_binary_files`` for a folder of ``.txt``; a DocBin is read here and
handed over), checked as in a local run (:func:`.notes.checked`: the bad ones
go to ``errors/``), annotated by ``map_batches`` with a pool of actors that
each load the pipeline once, and written with Ray Data's sinks (``write_json``,
``write_parquet``) straight into the output folder. A record holds what a local
run's record holds (:func:`.records.iter_records` reads both; Ray's JSON writer
adds nulls for the fields a note lacks, which the reader drops).

A Ray run is not resumable shard by shard: Ray Data decides which notes go in which
block and file (``part-ray_<write>_<task>``). An interrupted run is run again with
``--overwrite``, which clears what it wrote.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from .notes import Note, checked, decoded, input_kind, parquet_table, read_notes, txt_files
from .records import doc_to_record, iter_records, records_to_table
from .shards import MANIFEST



def _columns(notes: List[Note]) -> Dict[str, List[str]]:
    """Notes as columns; a good note's reason and a bad one's text are "" (Arrow makes a column
    of nulls a column of NaN floats, and a later batch would not match it)."""
    return {"id": [n.id for n in notes], "text": [n.text or "" for n in notes],
            "reason": [n.reason or "" for n in notes]}


def _source(path: Path, id_column: str, text_column: str, max_chars: int) -> Any:
    """The notes as a Ray dataset of ``id``, ``text`` (None for a bad note) and ``reason``."""
    import pyarrow as pa
    import ray.data

    kind = input_kind(path)
    if kind == "docbin":  # one file, read here: Ray has no DocBin source
        notes = list(read_notes(path, max_chars=max_chars))
        return ray.data.from_arrow(pa.table(_columns(notes)))
    if kind == "txt":  # the local engine's files (Ray's own listing skips names starting "." or "_")
        folder = path.resolve()
        dataset = ray.data.read_binary_files([file.as_posix() for file in txt_files(folder)], include_paths=True)
        root = folder.as_posix().rstrip("/") + "/"

        def check(batch: Dict[str, Any]) -> Dict[str, List[Any]]:
            return _columns([decoded(str(p).split(root, 1)[-1], data, max_chars)
                             for p, data in zip(batch["path"], batch["bytes"])])
    else:
        if kind == "parquet":
            parquet_table(path, id_column, text_column)  # the columns are there, or the run stops here
            dataset = ray.data.read_parquet(str(path), columns=[id_column, text_column])
        else:
            dataset = ray.data.read_json(str(path), lines=True)

        def check(batch: Dict[str, Any]) -> Dict[str, List[Any]]:
            for column, option in ((id_column, "--id-column"), (text_column, "--text-column")):
                if column not in batch:
                    raise ValueError(f"{path}: records without the {column!r} field (pass {option})")
            if any(i is None for i in batch[id_column]):
                raise ValueError(f"{path}: a record without a value in {id_column!r}")
            return _columns([checked(i, t, max_chars) for i, t in zip(batch[id_column], batch[text_column])])
    return dataset.map_batches(check, batch_format="numpy")


def _bad_notes(batch: Dict[str, Any]) -> Dict[str, Any]:
    """The ids and reasons of a batch's bad notes (a row-wise ``filter`` costs a Python call per note)."""
    bad = batch["reason"] != ""
    return {"id": batch["id"][bad], "reason": batch["reason"][bad]}


REPEATED_ID = "another note has the same id (Ray does not keep the input's order, so every such note is left out)"


def _without_repeated_ids(dataset: Any) -> Any:
    """``dataset`` with each note whose id another note has marked bad. The local engine keeps
    the first of them; Ray Data has no first, so none is kept rather than a random one (two
    records with one id could not be told apart downstream). Costs one pass over the ids."""
    def ids_counted_twice(batch: Dict[str, Any]) -> Dict[str, Any]:
        return {"id": batch["id"][batch["count()"] > 1]}

    counts = dataset.select_columns(["id"]).groupby("id").count()
    repeated = {row["id"] for row in counts.map_batches(ids_counted_twice, batch_format="numpy").iter_rows()}
    if not repeated:
        return dataset

    def mark(batch: Dict[str, Any]) -> Dict[str, Any]:
        reasons = [r or (REPEATED_ID if i in repeated else "") for i, r in zip(batch["id"], batch["reason"])]
        return {**batch, "reason": reasons}

    return dataset.map_batches(mark, batch_format="numpy")


def part_names(file_format: str) -> Any:
    """Ray's file names for the records and errors: ``part-ray_<write>_<task>.<format>``, which
    :func:`.records.iter_records` reads and ``--overwrite`` clears, and no other file is."""
    from ray.data.datasource import FilenameProvider

    class PartNames(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-ray_{write_uuid}_{task_index:06}.{file_format}"

        def get_filename_for_block(self, block: Any, write_uuid: str, task_index: int, block_index: int) -> str:
            return f"part-ray_{write_uuid}_{task_index:06}_{block_index:06}.{file_format}"  # Ray before 2.50

    return PartNames()


class Annotator:
    """A Ray actor: loads the pipeline once, then annotates batches of good notes into records."""

    def __init__(self, pipeline: str, gpu: bool, spans_key: Optional[str], with_text: bool, output_format: str,
                 batch_size: int) -> None:
        from ..cli import load_pipeline
        from ..cli.evaluate import concepts_key

        self.nlp = load_pipeline(pipeline, 0 if gpu else -1)
        self.spans_key = concepts_key(self.nlp, pipeline, spans_key)
        self.with_text = with_text
        self.format = output_format
        self.batch_size = batch_size

    def __call__(self, batch: Dict[str, Any]) -> Any:
        import pyarrow as pa

        good = [(t, str(i)) for i, t, r in zip(batch["id"], batch["text"], batch["reason"]) if not r]
        records = [doc_to_record(doc, note_id, self.spans_key, self.with_text)
                   for doc, note_id in self.nlp.pipe(good, as_tuples=True, batch_size=self.batch_size)]
        if self.format == "parquet":
            return records_to_table(records)
        return pa.Table.from_pylist(records) if records else pa.table({"id": pa.array([], pa.string())})


def annotate_with_ray(pipeline: str, input_path: Path, output: Path, settings: Dict[str, Any], *,
                      output_format: str = "jsonl", address: Optional[str] = None, workers: int = 1,
                      gpus_per_worker: float = 0.0, batch_size: int = 32, id_column: str = "id",
                      text_column: str = "text", max_chars: int = 1_000_000, with_text: bool = True,
                      spans_key: Optional[str] = None) -> Dict[str, int]:
    """Annotate ``input_path`` into ``output`` with Ray; returns the counts the manifest gets.

    ``address``: a cluster's (``ray://host:10001``, ``auto``); None starts Ray on this
    machine. ``pipeline`` must be loadable on every node (a shared path or a package)."""
    import ray

    if output_format not in ("jsonl", "parquet"):
        raise ValueError(f"--engine ray writes jsonl or parquet, not {output_format} (use the local engine)")
    output.mkdir(parents=True, exist_ok=True)
    started_here = not ray.is_initialized()
    # Started here, Ray counts one CPU more than the workers take: the read tasks need one, and
    # with every CPU held by an actor the job would wait forever.
    cpus = None if address else max(os.cpu_count() or 1, workers + 1)
    ray.init(address=address, num_cpus=cpus, include_dashboard=False, ignore_reinit_error=True,
             log_to_driver=False, configure_logging=False)
    try:
        source = _without_repeated_ids(_source(input_path, id_column, text_column, max_chars))
        errors_folder = output / "errors"
        source.map_batches(_bad_notes, batch_format="numpy").write_json(
            str(errors_folder), filename_provider=part_names("json"), force_ascii=False)
        records = source.map_batches(
            Annotator, batch_format="numpy", batch_size=batch_size, concurrency=workers, num_gpus=gpus_per_worker,
            fn_constructor_kwargs=dict(pipeline=pipeline, gpu=gpus_per_worker > 0, spans_key=spans_key,
                                       with_text=with_text, output_format=output_format, batch_size=batch_size))
        if output_format == "parquet":
            records.write_parquet(str(output), filename_provider=part_names("parquet"))
        else:  # pandas writes JSON behind Ray: 15 digits is its most
            records.write_json(str(output), filename_provider=part_names("json"), force_ascii=False,
                               double_precision=15)
    finally:
        if started_here:
            ray.shutdown()
    counts = {"notes": sum(1 for _ in iter_records(output)),
              "errors": sum(1 for _ in iter_records(errors_folder)) if errors_folder.exists() else 0}
    manifest = {**settings, "engine": "ray", "format": output_format, "workers": workers, **counts}
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    return counts
