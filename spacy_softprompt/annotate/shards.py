"""The output folder of a local run: shards in one of three formats, ``errors.jsonl``, a manifest.

Shard ``k`` holds the notes ``k * shard_size`` to ``(k + 1) * shard_size - 1``
of the input (:mod:`.notes` reads them in a fixed order). The manifest lists
the finished shards, so a re-run skips exactly their notes: no duplicates,
none missing.

Every file a crash could cut short (a JSONL or Parquet shard, ``errors.jsonl``,
the manifest) goes to a temporary name first and is renamed into place; the
manifest is written last, so it never names a shard that is not complete.
``errors.jsonl`` may hold the errors of a shard cut short before its manifest
entry: a resumed run keeps only the lines the manifest counts. A brat shard is
many ``.txt``/``.ann`` pairs named by note id; a resumed run writes the pairs of
an unfinished shard again, over what it left.
"""
from __future__ import annotations

import json
import os
import shutil
from itertools import islice
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from spacy.tokens import Doc

from ..relations import DEFAULT_SPANS_KEY
from .notes import Note
from .records import RECORD_FILE, doc_to_record, records_to_table

if TYPE_CHECKING:
    from spacy.language import Language

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
FORMATS = ("jsonl", "parquet", "brat")


def brat_stem(note_id: str) -> str:
    """The file name (without ``.txt``/``.ann``) of a note in brat output: its id, which must be
    a relative path inside the output folder; a ``.txt`` suffix (a folder input's id) is dropped."""
    path = PurePosixPath(note_id)
    if not note_id or path.is_absolute() or ".." in path.parts or "\\" in note_id:
        raise ValueError(f"id {note_id!r} is not a relative path; it cannot name brat files")
    return note_id[:-4] if note_id.lower().endswith(".txt") else note_id


def clear_output(folder: Path) -> None:
    """Forget an earlier run in ``folder`` (``--overwrite``), finished or cut short, a local run's
    or a Ray run's: the files it writes (the manifest, the errors, the ``part-*`` record files and
    their temporary names), nothing else (the input may sit beside them). Brat pairs are left to
    be overwritten."""
    shutil.rmtree(folder / "errors", ignore_errors=True)
    ours = {MANIFEST, ERRORS, MANIFEST + ".tmp", ERRORS + ".tmp"}
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.is_file() and (path.name in ours or RECORD_FILE.fullmatch(path.name)):
            path.unlink()


def _replace(path: Path, lines: Iterable[str]) -> None:
    """Write to a temporary name, then rename: a crash leaves the old file or the new, never half."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf8") as out:
        out.writelines(lines)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


class ShardWriter:
    """The output folder: shards, ``errors.jsonl`` and the manifest that says which shards are done.

    ``output_format``: ``jsonl`` (``part-NNNNN.jsonl``, one record per note),
    ``parquet`` (``part-NNNNN.parquet``, the same records, :func:`.records.arrow_schema`)
    or ``brat`` (``<id>.txt`` + ``<id>.ann`` per note; ``brat_options`` go to
    :func:`~spacy_softprompt.corpora.brat.write_brat`, e.g. ``tail_first``)."""

    def __init__(self, folder: Path, settings: Dict[str, Any], output_format: str = "jsonl", *,
                 spans_key: str = DEFAULT_SPANS_KEY, with_text: bool = True,
                 brat_options: Optional[Dict[str, Any]] = None) -> None:
        """``settings``: what decides the records (input, pipeline, options); a resumed run must match."""
        if output_format not in FORMATS:
            raise ValueError(f"unknown output format {output_format!r}: choose one of {', '.join(FORMATS)}")
        self.folder = folder
        self.settings = settings
        self.format = output_format
        self.spans_key = spans_key
        self.with_text = with_text
        self.brat_options = brat_options or {}
        self.shards: List[Dict[str, Any]] = []
        self.errors: List[str] = []
        self._brat_names: Set[str] = set()

    def existing(self) -> Optional[Dict[str, Any]]:
        """The manifest of an earlier run in this folder, if any."""
        path = self.folder / MANIFEST
        return json.loads(path.read_text(encoding="utf8")) if path.is_file() else None

    def resume(self, manifest: Dict[str, Any], notes: Iterable[Note] = ()) -> None:
        """Take over the finished shards of ``manifest`` and their errors (the lines it counts).
        Brat output: ``notes`` are those shards' notes, whose file names later notes must not take."""
        self.shards = list(manifest["shards"])
        kept = sum(shard["errors"] for shard in self.shards)
        path = self.folder / ERRORS
        self.errors = path.read_text(encoding="utf8").splitlines(keepends=True)[:kept] if kept else []
        for note in notes:
            if note.text is not None:
                try:
                    self._brat_names.add(brat_stem(note.id))
                except ValueError:
                    pass  # that note went to the errors and named no files

    def commit(self, annotated: List[Tuple[Doc, str]], failed: List[Note], last_id: Any = None) -> None:
        """Write the next shard (``annotated``: Docs and their note ids), then the errors, then
        the manifest that names the shard and its last note (``last_id``, which a resumed run finds
        where it resumes, or the input changed). A note whose id cannot name brat files joins ``failed``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self.shards):05d}"
        if self.format == "brat":
            written, failed = self._write_brat(annotated, failed)
        else:
            records = [doc_to_record(doc, note_id, self.spans_key, self.with_text) for doc, note_id in annotated]
            name += f".{self.format}"
            self._write_records(self.folder / name, records)
            written = len(records)
        self.errors += [json.dumps({"id": n.id, "reason": n.reason}, ensure_ascii=False) + "\n" for n in failed]
        _replace(self.folder / ERRORS, self.errors)
        self.shards.append({"name": name, "notes": written, "errors": len(failed), "last_id": last_id})
        manifest = {**self.settings, "format": self.format, "shards": self.shards}
        _replace(self.folder / MANIFEST, [json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"])

    def _write_records(self, path: Path, records: List[Dict[str, Any]]) -> None:
        if self.format == "jsonl":
            _replace(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            return
        import pyarrow.parquet as pq

        temporary = path.with_name(path.name + ".tmp")
        pq.write_table(records_to_table(records), temporary)
        os.replace(temporary, path)

    def _write_brat(self, annotated: List[Tuple[Doc, str]], failed: List[Note]) -> Tuple[int, List[Note]]:
        from ..corpora.brat import write_brat

        failed = list(failed)
        written = 0
        for doc, note_id in annotated:
            try:
                stem = brat_stem(note_id)
            except ValueError as err:
                failed.append(Note(note_id, None, str(err)))
                continue
            if stem in self._brat_names:
                failed.append(Note(note_id, None, f"a note before it has the same brat file name {stem!r}"))
                continue
            self._brat_names.add(stem)
            write_brat(doc, self.folder / f"{stem}.ann", txt_path=self.folder / f"{stem}.txt",
                       spans_key=self.spans_key, **self.brat_options)
            written += 1
        return written, failed


def annotate_notes(nlp: "Language", notes: Iterable[Note], writer: ShardWriter, shard_size: int, *,
                   batch_size: int = 32, n_process: int = 1,
                   on_shard: Optional[Callable[[], None]] = None) -> Iterator[int]:
    """Annotate ``notes`` (those after the writer's finished shards) shard by shard; yields, after
    each note, how many are done (for a progress bar), and calls ``on_shard()`` after each
    commit. ``nlp.pipe`` runs once per shard, so its batches start where the shard starts: which
    notes share a backbone pass (their scores differ in the last digits otherwise) is the same in
    a resumed run as in an uninterrupted one."""
    notes = iter(notes)
    read = 0
    while True:
        shard = list(islice(notes, shard_size))
        if not shard:
            return
        good = [(note.text, note.id) for note in shard if note.text is not None]
        annotated = []
        for doc, note_id in nlp.pipe(good, as_tuples=True, batch_size=batch_size, n_process=n_process):
            annotated.append((doc, note_id))
            yield read + len(annotated)
        read += len(shard)
        writer.commit(annotated, [note for note in shard if note.text is None], last_id=shard[-1].id)
        yield read
        if on_shard is not None:
            on_shard()
