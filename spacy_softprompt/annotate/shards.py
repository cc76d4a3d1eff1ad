"""The output folder of a local run: shards in one of three formats, ``errors.jsonl``, a manifest.

Shard ``k`` holds the notes ``k * shard_size`` to ``(k + 1) * shard_size - 1``
of the input (:mod:`.notes` reads them in a fixed order). The manifest lists
the finished shards, each with a digest of its notes (ids and texts), so a
re-run skips exactly their notes: no duplicates, none missing. A resumed run
reads the finished shards' notes again and refuses an input whose notes there
changed (an input that only grew at its end is resumed), and refuses a folder
whose shard files are missing or short.

Every file a crash could cut short (a JSONL or Parquet shard, ``errors.jsonl``,
the manifest) goes to a temporary name first and is renamed into place; the
manifest is written last, so it never names a shard that is not complete.
``errors.jsonl`` may hold the errors of a shard cut short before its manifest
entry: a resumed run keeps only the lines the manifest counts. A brat shard is
many ``.txt``/``.ann`` pairs named by note id, listed in the manifest; a resumed
run writes the pairs of an unfinished shard again, over what it left.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from itertools import chain, islice
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


class ResumeRefused(ValueError):
    """An earlier run in the output folder cannot be resumed: its input or its files changed."""


NAME_BYTES = 250  # a file name's limit on common file systems (255), less ".ann"


def brat_stem(note_id: str) -> str:
    """The file name (without ``.txt``/``.ann``) of a note in brat output: its id, which must be
    a relative path inside the output folder; a ``.txt`` suffix (a folder input's id) is dropped,
    and the path is written plainly (``./a`` and ``x//y`` name the files of ``a`` and ``x/y``)."""
    path = PurePosixPath(note_id)
    if not path.parts or path.is_absolute() or ".." in path.parts or "\\" in note_id or "\0" in note_id:
        raise ValueError(f"id {note_id!r} is not a relative path; it cannot name brat files")
    if any(len(part.encode("utf8")) > NAME_BYTES for part in path.parts):
        raise ValueError(f"id {note_id[:40]!r}... is longer than a file name may be ({NAME_BYTES} bytes a part); "
                         "it cannot name brat files")
    stem = note_id[:-4] if note_id.lower().endswith(".txt") else note_id
    if not PurePosixPath(stem).name or stem.endswith("/"):
        raise ValueError(f"id {note_id!r} leaves no file name once its .txt is dropped; it cannot name brat files")
    return PurePosixPath(stem).as_posix()


def same_file_key(stem: str) -> str:
    """Stems naming one file on a case-insensitive file system (macOS's, Windows') share this key:
    brat output is refused a second such note rather than written where it would overwrite."""
    return stem.casefold()


def notes_digest(notes: Iterable[Note]) -> str:
    """What a shard was made from (each note's id, text, or why it failed): a resumed run's input
    must give the finished shards the same notes."""
    digest = hashlib.sha256()
    for note in notes:
        digest.update(json.dumps(list(note), ensure_ascii=True).encode() + b"\n")
    return digest.hexdigest()


def read_manifest(folder: Path) -> Optional[Dict[str, Any]]:
    """The manifest of an earlier run in ``folder``, if any; one that is not a manifest is refused."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not an annotate manifest ({err}); pass --overwrite to replace the run's files, "
                         "or another output folder") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards", []), list):
        raise ValueError(f"{path}: not an annotate manifest (an object with a list of shards); pass --overwrite "
                         "to replace the run's files, or another output folder")
    return manifest


def clear_output(folder: Path) -> None:
    """Forget an earlier run in ``folder`` (``--overwrite``), finished or cut short, a local run's
    or a Ray run's: the files it writes (the manifest, the errors, the ``part-*`` record files and
    their temporary names, the brat pairs its manifest lists), nothing else (the input may sit
    beside them). Brat pairs of a shard cut short before the manifest named it are overwritten
    when the same note comes again, else left."""
    try:
        manifest = read_manifest(folder) or {}
    except ValueError:
        manifest = {}  # not a manifest: no pairs known
    for shard in manifest.get("shards", []):
        for stem in shard.get("files", []) if isinstance(shard, dict) else []:
            for suffix in (".txt", ".ann"):
                (folder / f"{stem}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(folder / "errors", ignore_errors=True)
    for path in _run_files(folder):
        path.unlink()


def _run_files(folder: Path) -> List[Path]:
    """The files in ``folder`` a run writes besides brat pairs and ``errors/``: the manifest, the
    errors, the ``part-*`` record files, and their temporary names."""
    ours = {MANIFEST, ERRORS, MANIFEST + ".tmp", ERRORS + ".tmp"}
    return [path for path in (folder.iterdir() if folder.is_dir() else [])
            if path.is_file() and (path.name in ours or RECORD_FILE.fullmatch(path.name))]


def unlisted_output(folder: Path) -> List[str]:
    """Record and error files in ``folder`` that no manifest lists (a Ray run cut short leaves
    them): a run writing beside them would mix its records with theirs."""
    if (folder / MANIFEST).exists():
        return []
    names = sorted(path.name for path in _run_files(folder) if not path.name.endswith(".tmp"))
    return names + (["errors/"] if (folder / "errors").is_dir() else [])


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
        self.seen_ids: Set[str] = set()  # a later note with one of these ids goes to the errors

    def resume(self, shards: List[Dict[str, Any]], notes: Iterable[Note], reopen_last: bool = False) -> Iterator[Note]:
        """Take over finished ``shards`` of an earlier run and their errors (the lines it counts),
        given the notes they were made from (the input's, read again); returns the notes after
        them. ``reopen_last``: the last shard is checked too, then made again (the input grew after
        a run that ended on a short shard): its notes come first. ValueError when those notes
        changed or the shards' files are not all there: :class:`ResumeRefused`."""
        notes = iter(notes)
        for number, shard in enumerate(shards):
            size = shard["notes"] + shard["errors"]
            mine = list(islice(notes, size))
            if "digest" in shard:
                same = notes_digest(mine) == shard["digest"]
            else:  # an older annotate's manifest: its shard's last note id alone (texts not checked)
                same = len(mine) == size and mine[-1].id == shard.get("last_id")
            if not same:
                first = sum(s["notes"] + s["errors"] for s in shards[:number]) + 1
                raise ResumeRefused(f"the input changed since the earlier run in {self.folder}: its notes {first} to "
                                    f"{first + size - 1} are not the ones its shard {shard['name']} was made from; "
                                    "resuming would annotate some notes twice and skip others")
            if reopen_last and number == len(shards) - 1:
                shards, notes = shards[:-1], chain(mine, notes)  # (the same notes: the same brat files, rewritten)
                break
            self._check_files(shard)
            self.seen_ids.update(note.id for note in mine)
            for note in mine:
                if note.text is not None and self.format == "brat":
                    try:
                        self._brat_names.add(same_file_key(brat_stem(note.id)))
                    except ValueError:
                        pass  # that note went to the errors and named no files
        self.shards = list(shards)
        kept = sum(shard["errors"] for shard in self.shards)
        path = self.folder / ERRORS
        lines = path.read_text(encoding="utf8").split("\n")[:-1] if path.is_file() else []
        if len(lines) < kept:  # split on \n alone: a note id may hold U+2028, which splitlines splits on
            raise ResumeRefused(f"{path} holds {len(lines)} lines where the earlier run's manifest counts {kept} errors")
        self.errors = [line + "\n" for line in lines[:kept]]
        return notes

    def first_of_its_id(self, note: Note) -> Note:
        """The note, or (its id taken by an earlier note) an error: two records with one id could
        not be told apart downstream."""
        if note.id in self.seen_ids:
            return Note(note.id, None, "an earlier note has the same id")
        self.seen_ids.add(note.id)
        return note

    def _check_files(self, shard: Dict[str, Any]) -> None:
        """A finished shard's files are where the manifest says, with its number of records."""
        if self.format == "brat":
            if "files" not in shard:  # an older annotate's manifest did not list them
                return
            stems = shard["files"]
            missing = [f"{stem}{suffix}" for stem in stems for suffix in (".txt", ".ann")
                       if not (self.folder / f"{stem}{suffix}").is_file()]
            found = len(stems)
        else:
            path = self.folder / shard["name"]
            missing = [] if path.is_file() else [shard["name"]]
            found = 0 if missing else _count_records(path, self.format)
        if missing or found != shard["notes"]:
            what = f"{', '.join(missing[:3])} missing" if missing else f"{found} records in {shard['name']}"
            raise ResumeRefused(f"{self.folder} is not as the earlier run left it ({what}, where its manifest counts "
                             f"{shard['notes']} annotated notes in shard {shard['name']})")

    def commit(self, annotated: List[Tuple[Doc, str]], failed: List[Note], digest: str) -> None:
        """Write the next shard (``annotated``: Docs and their note ids), then the errors, then
        the manifest that names the shard and the ``digest`` of its notes (:func:`notes_digest`,
        which a resumed run checks). A note whose id cannot name brat files joins ``failed``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{len(self.shards):05d}"
        entry: Dict[str, Any] = {}
        if self.format == "brat":
            stems, failed = self._write_brat(annotated, failed)
            written, entry["files"] = len(stems), stems
        else:
            records = [doc_to_record(doc, note_id, self.spans_key, self.with_text) for doc, note_id in annotated]
            name += f".{self.format}"
            self._write_records(self.folder / name, records)
            written = len(records)
        self.errors += [json.dumps({"id": n.id, "reason": n.reason}, ensure_ascii=False) + "\n" for n in failed]
        _replace(self.folder / ERRORS, self.errors)
        self.shards.append({"name": name, "notes": written, "errors": len(failed), "digest": digest, **entry})
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

    def _write_brat(self, annotated: List[Tuple[Doc, str]], failed: List[Note]) -> Tuple[List[str], List[Note]]:
        """The file names written, and the notes that failed (``failed`` and those whose id names no file)."""
        from ..corpora.brat import write_brat

        failed = list(failed)
        written = []
        for doc, note_id in annotated:
            try:
                stem = brat_stem(note_id)
            except ValueError as err:
                failed.append(Note(note_id, None, str(err)))
                continue
            if same_file_key(stem) in self._brat_names:
                failed.append(Note(note_id, None, f"a note before it has the brat file name {stem!r} (or one "
                                                     "differing only in case: one file on some systems)"))
                continue
            self._brat_names.add(same_file_key(stem))
            write_brat(doc, self.folder / f"{stem}.ann", txt_path=self.folder / f"{stem}.txt",
                       spans_key=self.spans_key, **self.brat_options)
            written.append(stem)
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
        digest = notes_digest(shard)  # of the input as read
        shard = [writer.first_of_its_id(note) for note in shard]
        good = [(note.text, note.id) for note in shard if note.text is not None]
        annotated = []
        for doc, note_id in nlp.pipe(good, as_tuples=True, batch_size=batch_size, n_process=n_process):
            annotated.append((doc, note_id))
            yield read + len(annotated)
        read += len(shard)
        writer.commit(annotated, [note for note in shard if note.text is None], digest)
        yield read
        if on_shard is not None:
            on_shard()


def _count_records(path: Path, output_format: str) -> int:
    if output_format == "jsonl":
        with path.open("rb") as lines:
            return sum(1 for _ in lines)
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
