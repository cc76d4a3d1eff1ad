"""Notes in: a folder of ``.txt`` files, a JSONL or Parquet table, or a DocBin, always in one order.

A note's position in that order decides its output shard, which is what makes a
run resumable (see :mod:`.shards`). A note that cannot be annotated (not UTF-8,
empty, too long, a text that is not a string) becomes a :class:`Note` with a
``reason`` and the run goes on; input that is not what was meant (a line that is
not JSON, a record without an id, a table without the columns) stops the run
with the file and line or column named.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, List, NamedTuple, Optional

#: input kinds by file suffix; a folder is a folder of .txt notes
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".spacy": "docbin"}


class Note(NamedTuple):
    """One input note: ``text`` is None when it cannot be annotated, and ``reason`` says why."""

    id: str
    text: Optional[str]
    reason: Optional[str] = None


def input_kind(path: Path) -> str:
    """``txt`` (a folder), ``jsonl``, ``parquet`` or ``docbin``; anything else is refused."""
    if path.is_dir():
        return "txt"
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: not a folder of .txt notes, and {path.suffix or 'no suffix'} is not one of "
                         f"{', '.join(sorted(SUFFIXES))}")
    return kind


def unencodable(text: str) -> Optional[int]:
    """Where ``text`` holds a lone surrogate (a JSON ``\\ud83d`` escape without its pair), which no
    file can hold as UTF-8 nor spaCy tokenize; None: nowhere."""
    try:
        text.encode("utf8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def checked(note_id: Any, text: Any, max_chars: int) -> Note:
    """The note, or why it cannot be annotated (the run goes on without it). An id that no
    output file could hold raises ValueError (the reader names the file and line)."""
    note_id = str(note_id)
    if unencodable(note_id) is not None:
        raise ValueError(f"id {note_id.encode('utf8', 'backslashreplace').decode()!r} is not valid Unicode "
                         "(a lone surrogate)")
    if text is not None and not isinstance(text, str):
        return Note(note_id, None, f"text is a {type(text).__name__}, not a string")
    if text is None or not text.strip():
        return Note(note_id, None, "empty or whitespace only")
    if len(text) > max_chars:
        return Note(note_id, None, f"{len(text)} characters, over --max-chars {max_chars}")
    at = unencodable(text)
    if at is not None:
        return Note(note_id, None, f"not valid Unicode (a lone surrogate at character {at})")
    return Note(note_id, text)


def decoded(note_id: str, data: bytes, max_chars: int) -> Note:
    """A ``.txt`` note from its bytes: UTF-8 or an error note."""
    try:
        text = data.decode("utf8")
    except UnicodeDecodeError as err:
        return Note(note_id, None, f"not UTF-8 ({err.reason} at byte {err.start})")
    return checked(note_id, text, max_chars)


def txt_files(folder: Path) -> List[Path]:
    """The folder's notes: ``.txt`` files at any depth, ``.TXT`` too, in path order (linked
    folders are not followed). A folder that cannot be listed, or a ``.txt`` that is not a file (a
    broken link), is refused: its notes would be missing from the run without a word."""
    found: List[Path] = []
    folders = [folder]
    while folders:
        here = folders.pop()
        try:
            entries = list(os.scandir(here))
        except OSError as err:
            raise ValueError(f"{here}: the folder cannot be read ({err.strerror}); its notes would be left out") from err
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
            elif entry.is_dir():
                continue  # a linked folder: not followed
            elif Path(entry.name).suffix.lower() == ".txt":
                if not entry.is_file():
                    raise ValueError(f"{entry.path}: not a file that can be read (a broken link?)")
                found.append(Path(entry.path))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def count_notes(path: Path, text_column: str = "text") -> int:
    """How many notes :func:`read_notes` will give (for the progress bar's estimate)."""
    kind = input_kind(path)
    if kind == "txt":
        return len(txt_files(path))
    if kind == "parquet":
        return _parquet_file(path).metadata.num_rows
    if kind == "docbin":
        return len(_docbin(path))
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def read_notes(path: Path, *, id_column: str = "id", text_column: str = "text",
               max_chars: int = 1_000_000) -> Iterator[Note]:
    """The notes of ``path`` in a fixed order (a resumed run finds its place by it).

    Ids: a ``.txt`` file's path relative to the folder; a table's ``id_column``; a
    DocBin document's ``doc._.doc_id``, else its index."""
    readers = {"txt": _txt_notes, "jsonl": _jsonl_notes, "parquet": _parquet_notes, "docbin": _docbin_notes}
    return readers[input_kind(path)](path, id_column, text_column, max_chars)


def _txt_notes(folder: Path, _id: str, _text: str, max_chars: int) -> Iterator[Note]:
    for file in txt_files(folder):
        try:
            yield decoded(file.relative_to(folder).as_posix(), file.read_bytes(), max_chars)
        except ValueError as err:  # a file name that is not UTF-8
            raise ValueError(f"{file}: {err}") from err


def _jsonl_notes(path: Path, id_column: str, text_column: str, max_chars: int) -> Iterator[Note]:
    """One record a line. A line with bytes that are not UTF-8 (an export's stray Latin-1) is
    still read for its id, and its note goes to the errors; its id must be UTF-8."""
    with path.open("rb") as lines:
        first = True
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if first and line.lstrip().startswith(b"["):
                raise ValueError(f"{path}: a JSON array; annotate reads JSON Lines, one record a line "
                                 "(e.g. jq -c '.[]' file.json > file.jsonl)")
            try:
                text, bad = line.decode("utf8"), None
            except UnicodeDecodeError as err:
                text, bad = line.decode("utf8", "surrogateescape"), err
            try:
                record = json.loads(text)
            except ValueError as err:
                raise ValueError(f"{path}, line {number}: not a JSON record ({err})") from err
            first = False
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: not a JSON object ({type(record).__name__}); each line is "
                                 f"one note, e.g. {{\"{id_column}\": ..., \"{text_column}\": ...}}")
            if record.get(id_column) is None:
                raise ValueError(f"{path}, line {number}: no {id_column!r} field (pass --id-column)")
            if text_column not in record:
                raise ValueError(f"{path}, line {number}: no {text_column!r} field (pass --text-column)")
            where = f"{path}, line {number}"
            if bad is not None:
                if unencodable(str(record[id_column])) is not None:
                    raise ValueError(f"{where}: its {id_column!r} is not UTF-8 ({bad.reason} at byte {bad.start})")
                yield Note(str(record[id_column]), None, f"not UTF-8 ({bad.reason} at byte {bad.start} of the line)")
                continue
            try:
                yield checked(record[id_column], record[text_column], max_chars)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from err


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install 'spacy-softprompt[parquet]')") from err
    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid for a file that is not Parquet
        raise ValueError(f"{path}: not a Parquet file ({err})") from err


def parquet_table(path: Path, id_column: str, text_column: str) -> Any:
    """The Parquet file, refused with the columns it has when it lacks the id or text column."""
    table = _parquet_file(path)
    names = table.schema_arrow.names
    for column, option in ((id_column, "--id-column"), (text_column, "--text-column")):
        if column not in names:
            raise ValueError(f"{path}: no column {column!r} (columns: {', '.join(names)}; pass {option})")
    return table


def _parquet_notes(path: Path, id_column: str, text_column: str, max_chars: int) -> Iterator[Note]:
    table = parquet_table(path, id_column, text_column)
    row = 0
    for batch in table.iter_batches(columns=[id_column, text_column], batch_size=1024):
        for note_id, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()):
            row += 1
            if note_id is None:
                raise ValueError(f"{path}, row {row}: no value in column {id_column!r}")
            try:
                yield checked(note_id, text, max_chars)
            except ValueError as err:
                raise ValueError(f"{path}, row {row}: {err}") from err


def _docbin(path: Path) -> List[Any]:
    import spacy
    from spacy.tokens import DocBin

    try:
        return list(DocBin(store_user_data=True).from_disk(path).get_docs(spacy.blank("en").vocab))
    except Exception as err:  # msgpack / zlib errors from inside spaCy
        raise ValueError(f"{path}: not a spaCy DocBin ({type(err).__name__}: {err})") from err


def _docbin_notes(path: Path, _id: str, _text: str, max_chars: int) -> Iterator[Note]:
    for index, doc in enumerate(_docbin(path)):
        note_id = doc._.doc_id if doc.has_extension("doc_id") and doc._.doc_id else index
        yield checked(note_id, doc.text, max_chars)
