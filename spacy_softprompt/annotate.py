"""Notes in, JSONL records out: what ``python -m spacy_softprompt annotate`` reads and writes.

Notes come from a folder of ``.txt`` files or a JSONL table, always in the same
order, so a note's position decides its shard: shard ``k`` holds the notes
``k * shard_size`` to ``(k + 1) * shard_size - 1`` of the input. That is what
makes a run resumable without duplicates: the manifest lists the finished
shards, and a re-run skips exactly their notes.

Every write that a crash could cut short (a shard, ``errors.jsonl``, the
manifest) goes to a temporary name first and is renamed into place; the
manifest is written last, so it never names a shard that is not complete.
``errors.jsonl`` may hold the errors of a shard that was cut short before its
manifest entry: a resumed run keeps only the lines the manifest counts.

:func:`read_jsonl` turns the records back into Docs.
"""
from __future__ import annotations

import json
import os
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Union

from spacy.tokens import Doc, Span

from .relations import (
    DEFAULT_SPANS_KEY,
    Relation,
    concept_scores,
    concept_spans,
    set_concepts,
    set_relations,
    set_span_attributes,
)

if TYPE_CHECKING:
    from spacy.language import Language

MANIFEST = "manifest.json"
ERRORS = "errors.jsonl"
# medspaCy ConText's span flags: written when true, set back when medspaCy is loaded
CONTEXT_FLAGS = ("is_negated", "is_uncertain", "is_historical", "is_hypothetical", "is_family")


class Note(NamedTuple):
    """One input note: ``text`` is None when it cannot be annotated, and ``reason`` says why."""

    id: str
    text: Optional[str]
    reason: Optional[str] = None


def shard_name(index: int) -> str:
    return f"part-{index:05d}.jsonl"


def _checked(note_id: str, text: Optional[str], max_chars: int) -> Note:
    """The note, or why it cannot be annotated (the run goes on without it)."""
    if text is None or not text.strip():
        return Note(note_id, None, "empty or whitespace only")
    if len(text) > max_chars:
        return Note(note_id, None, f"{len(text)} characters, over --max-chars {max_chars}")
    return Note(note_id, text)


def _txt_files(folder: Path) -> List[Path]:
    return sorted(folder.rglob("*.txt"), key=lambda p: p.relative_to(folder).as_posix())


def count_notes(path: Path) -> int:
    """How many notes :func:`read_notes` will give (for the progress bar's estimate)."""
    if path.is_dir():
        return len(_txt_files(path))
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def read_notes(path: Path, *, id_column: str = "id", text_column: str = "text",
               max_chars: int = 1_000_000, skip: int = 0) -> Iterator[Note]:
    """The notes of a folder of ``.txt`` files (recursive; id: the path relative to the folder)
    or of a JSONL file, in a fixed order; the first ``skip`` are passed over unread (a resumed
    run). A line that is not JSON, or has no id, stops the run: the file is not what was meant."""
    if path.is_dir():
        for file in _txt_files(path)[skip:]:
            note_id = file.relative_to(path).as_posix()
            try:
                text = file.read_bytes().decode("utf8")
            except UnicodeDecodeError as err:
                yield Note(note_id, None, f"not UTF-8 ({err.reason} at byte {err.start})")
                continue
            yield _checked(note_id, text, max_chars)
        return
    with path.open("rb") as lines:
        seen = 0
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            seen += 1
            if seen <= skip:
                continue
            try:
                record = json.loads(line)
            except ValueError as err:  # undecodable bytes included: the line is not JSON text
                raise ValueError(f"{path}, line {number}: not a JSON record ({err})") from err
            if not isinstance(record, dict) or record.get(id_column) is None:
                raise ValueError(f"{path}, line {number}: no {id_column!r} field (pass --id-column)")
            text = record.get(text_column)
            if text is not None and not isinstance(text, str):
                yield Note(str(record[id_column]), None, f"{text_column!r} is not a string")
                continue
            yield _checked(str(record[id_column]), text, max_chars)


def _span_ref(span: Span) -> Dict[str, Any]:
    return {"start": span.start_char, "end": span.end_char, "label": span.label_}


def doc_to_record(doc: Doc, note_id: str, spans_key: str = DEFAULT_SPANS_KEY,
                  with_text: bool = True) -> Dict[str, Any]:
    """One note's annotations as plain JSON: character offsets, so any tool can use them."""
    concepts = []
    spans = concept_spans(doc, spans_key)
    for span, score in zip(spans, concept_scores(doc, spans_key) or [1.0] * len(spans)):
        concept: Dict[str, Any] = {**_span_ref(span), "text": span.text, "score": score}
        if span._.attributes:
            concept["attributes"] = span._.attributes
        concept.update({flag: True for flag in CONTEXT_FLAGS if span.has_extension(flag) and span._.get(flag)})
        concepts.append(concept)
    relations = [{"label": r.label, "head": _span_ref(r.head), "tail": _span_ref(r.tail), "score": r.score}
                 for r in doc._.relations]
    record: Dict[str, Any] = {"id": note_id, "n_chars": len(doc.text)}
    if with_text:
        record["text"] = doc.text
    record.update(concepts=concepts, relations=relations)
    if doc.cats:
        record["cats"] = dict(doc.cats)
    return record


def record_to_doc(record: Dict[str, Any], nlp: "Language", spans_key: str = DEFAULT_SPANS_KEY) -> Doc:
    """The Doc a record was written from: its concepts in ``doc.spans[spans_key]`` (and
    ``doc.ents``, where they do not overlap), relations, attributes and cats."""
    if "text" not in record:
        raise ValueError(f"record {record.get('id')!r} has no text (written with --no-text); "
                         "it cannot become a Doc")
    doc = nlp.make_doc(record["text"])
    doc._.doc_id = record["id"]

    def span(ref: Dict[str, Any]) -> Span:
        found = doc.char_span(ref["start"], ref["end"], label=ref["label"])
        if found is None:
            raise ValueError(f"record {record['id']!r}: characters {ref['start']}-{ref['end']} are not on "
                             f"token boundaries of {nlp.meta.get('name', 'this pipeline')}'s tokenizer")
        return found

    spans = [span(concept) for concept in record["concepts"]]
    set_concepts(doc, spans, [c["score"] for c in record["concepts"]], spans_key)
    for placed, concept in zip(spans, record["concepts"]):
        if concept.get("attributes"):
            set_span_attributes(placed, concept["attributes"])
        for flag in CONTEXT_FLAGS:
            if concept.get(flag) and placed.has_extension(flag):
                placed._.set(flag, True)
    set_relations(doc, [Relation(span(r["head"]), span(r["tail"]), r["label"], r["score"])
                        for r in record["relations"]])
    doc.cats = dict(record.get("cats", {}))
    return doc


def read_jsonl(path_or_folder: Union[str, Path], nlp: "Language",
               spans_key: str = DEFAULT_SPANS_KEY) -> Iterator[Doc]:
    """Docs from an ``annotate`` output folder (its shards in order) or from one shard file."""
    path = Path(path_or_folder)
    files = sorted(path.glob("part-*.jsonl")) if path.is_dir() else [path]
    for file in files:
        with file.open(encoding="utf8") as lines:
            for line in lines:
                if line.strip():
                    yield record_to_doc(json.loads(line), nlp, spans_key)


def _replace(path: Path, lines: Iterable[str]) -> None:
    """Write to a temporary name, then rename: a crash leaves the old file or the new, never half."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf8") as out:
        out.writelines(lines)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


class ShardWriter:
    """The output folder: shards, ``errors.jsonl`` and the manifest that says which shards are done."""

    def __init__(self, folder: Path, settings: Dict[str, Any]) -> None:
        """``settings``: what decides the records (input, pipeline, options); a resumed run must match."""
        self.folder = folder
        self.settings = settings
        self.shards: List[Dict[str, Any]] = []
        self.errors: List[str] = []

    def existing(self) -> Optional[Dict[str, Any]]:
        """The manifest of an earlier run in this folder, if any."""
        path = self.folder / MANIFEST
        return json.loads(path.read_text(encoding="utf8")) if path.is_file() else None

    def clear(self) -> None:
        """Forget an earlier run: its manifest, errors and shards."""
        for path in [self.folder / MANIFEST, self.folder / ERRORS, *self.folder.glob("part-*.jsonl")]:
            path.unlink(missing_ok=True)

    def resume(self, manifest: Dict[str, Any]) -> None:
        """Take over the finished shards of ``manifest`` and their errors (the lines it counts)."""
        self.shards = list(manifest["shards"])
        kept = sum(shard["errors"] for shard in self.shards)
        path = self.folder / ERRORS
        self.errors = path.read_text(encoding="utf8").splitlines(keepends=True)[:kept] if kept else []

    def commit(self, records: List[Dict[str, Any]], errors: List[Note]) -> None:
        """Write the next shard, then the errors, then the manifest that names the shard."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = shard_name(len(self.shards))
        _replace(self.folder / name, (json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        self.errors += [json.dumps({"id": n.id, "reason": n.reason}, ensure_ascii=False) + "\n" for n in errors]
        _replace(self.folder / ERRORS, self.errors)
        self.shards.append({"name": name, "notes": len(records), "errors": len(errors)})
        manifest = {**self.settings, "shards": self.shards}
        _replace(self.folder / MANIFEST, [json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"])


def annotate_notes(nlp: "Language", notes: Iterable[Note], writer: ShardWriter, shard_size: int, *,
                   spans_key: str = DEFAULT_SPANS_KEY, with_text: bool = True, batch_size: int = 32,
                   n_process: int = 1, on_shard: Optional[Callable[[], None]] = None) -> Iterator[int]:
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
        records = []
        for doc, note_id in nlp.pipe(good, as_tuples=True, batch_size=batch_size, n_process=n_process):
            records.append(doc_to_record(doc, note_id, spans_key, with_text))
            yield read + len(records)
        read += len(shard)
        writer.commit(records, [note for note in shard if note.text is None])
        yield read
        if on_shard is not None:
            on_shard()
