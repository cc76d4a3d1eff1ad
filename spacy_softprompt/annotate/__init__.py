"""Annotate notes at scale: ``python -m spacy_softprompt annotate`` and what it reads and writes.

:mod:`.notes` reads notes (folder of ``.txt``, JSONL, Parquet, DocBin) in a fixed
order; :mod:`.shards` annotates them locally into resumable shards (JSONL, Parquet
or brat) with ``errors.jsonl`` and a manifest; :mod:`.ray_engine` runs the same
job on Ray Data; :mod:`.records` is the record format and reads it back into Docs.
"""
from .notes import Note, count_notes, read_notes
from .records import CONTEXT_FLAGS, doc_to_record, iter_records, read_annotations, record_to_doc
from .shards import FORMATS, ShardWriter, annotate_notes, clear_output, read_manifest, unlisted_output

__all__ = ["CONTEXT_FLAGS", "FORMATS", "Note", "ShardWriter", "annotate_notes", "clear_output", "count_notes",
           "doc_to_record", "iter_records", "read_annotations", "read_manifest", "read_notes", "record_to_doc",
           "unlisted_output"]
