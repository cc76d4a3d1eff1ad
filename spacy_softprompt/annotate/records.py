"""One note's annotations as a plain record, as JSON or as an Arrow row, and back into a Doc.

A record is ``{"id", "n_chars", "text"?, "concepts", "relations", "cats"?}`` with
character offsets, so any tool can use it. JSONL holds records as they are.
Parquet holds the same content with a fixed schema (:func:`arrow_schema`), so
the files of one run, or of many, read as one table: span attributes and cats
become maps, and ConText's flags booleans. :func:`read_annotations` reads either
back into Docs.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Union

from spacy.tokens import Doc, Span

from ..relations import (
    CONTEXT_FLAGS,
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

#: a record file's name in an output folder: a local run's shard (``part-00000.jsonl``) or a
#: file Ray wrote (``part-ray_<write>_<task>.json``); a temporary name adds ``.tmp``
RECORD_FILE = re.compile(r"part-(\d{5,}|ray_[\w-]+)\.(jsonl|json|parquet)(\.tmp)?")


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
    record = clean(record)
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
            if concept.get(flag):
                if not placed.has_extension(flag):  # as medspaCy registers it, which takes it as it is
                    Span.set_extension(flag, default=False)
                placed._.set(flag, True)
    set_relations(doc, [Relation(span(r["head"]), span(r["tail"]), r["label"], r["score"])
                        for r in record["relations"]], source=spans_key)
    doc.cats = dict(record.get("cats", {}))
    return doc


def clean(value: Any) -> Any:
    """A record as :func:`doc_to_record` writes it, from what a table reader gives: fields that
    are null, false or empty where the record leaves them out are dropped (Arrow fills every
    field of a schema; pandas, behind Ray's JSON writer, writes the missing ones as null)."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items() if v is not None and v is not False and v != {}}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


def arrow_schema() -> Any:
    """The Parquet schema of a record: one row per note."""
    import pyarrow as pa

    ref = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string())])
    concept = pa.struct([*ref, ("text", pa.string()), ("score", pa.float64()),
                         ("attributes", pa.map_(pa.string(), pa.string())),
                         *((flag, pa.bool_()) for flag in CONTEXT_FLAGS)])
    relation = pa.struct([("label", pa.string()), ("head", ref), ("tail", ref), ("score", pa.float64())])
    return pa.schema([("id", pa.string()), ("n_chars", pa.int64()), ("text", pa.string()),
                      ("concepts", pa.list_(concept)), ("relations", pa.list_(relation)),
                      ("cats", pa.map_(pa.string(), pa.float64()))])


def records_to_table(records: List[Dict[str, Any]]) -> Any:
    """Records as an Arrow table of :func:`arrow_schema` (maps as key-value pairs)."""
    import pyarrow as pa

    def row(record: Dict[str, Any]) -> Dict[str, Any]:
        concepts = [{**c, "attributes": list(c.get("attributes", {}).items()),
                     **{flag: bool(c.get(flag)) for flag in CONTEXT_FLAGS}} for c in record["concepts"]]
        return {**record, "concepts": concepts, "cats": list(record.get("cats", {}).items())}

    return pa.Table.from_pylist([row(r) for r in records], schema=arrow_schema())


def table_to_records(table: Any) -> List[Dict[str, Any]]:
    """The records an Arrow table of :func:`arrow_schema` holds (maps back to dicts)."""
    def unmap(record: Dict[str, Any]) -> Dict[str, Any]:
        concepts = [{**c, "attributes": dict(c["attributes"] or [])} for c in record["concepts"]]
        return clean({**record, "concepts": concepts, "cats": dict(record["cats"] or [])})

    return [unmap(r) for r in table.to_pylist()]


def iter_records(path: Union[str, Path]) -> Iterator[Dict[str, Any]]:
    """The records of an output folder (its ``part-*`` files in order: a local run's shards or
    the files Ray wrote) or of one JSONL or Parquet file. Other files in the folder are not
    records and are not read."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if RECORD_FILE.fullmatch(p.name) and p.suffix != ".tmp")
    else:
        files = [path]
    for file in files:
        if file.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from table_to_records(pq.read_table(file))
            continue
        with file.open(encoding="utf8") as lines:
            for line in lines:
                if line.strip():
                    yield clean(json.loads(line))


def read_annotations(path: Union[str, Path], nlp: "Language", spans_key: str = DEFAULT_SPANS_KEY) -> Iterator[Doc]:
    """Docs from an ``annotate`` output folder (JSONL or Parquet) or from one of its files."""
    for record in iter_records(path):
        yield record_to_doc(record, nlp, spans_key)
