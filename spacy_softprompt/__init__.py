"""spacy_softprompt: clinical concept and relation extraction with learned prompts.

Importing the package registers ``doc._.relations``, ``span._.attributes`` and
``span._.fragments`` (the fragments of a discontinuous span).
The ``softprompt_ie`` factory is registered through the ``spacy_factories``
entry point, so ``spacy.load`` finds it without an import.
"""
from .relations import (
    DEFAULT_SPANS_KEY,
    Relation,
    RelationAlignmentError,
    RelationAlignmentWarning,
    get_relations,
    realign_concepts,
    register_extensions,
    set_concepts,
    set_relations,
    set_span_attributes,
)

from .fragments import register_fragments_extension
from .annotate import iter_records, read_annotations

register_extensions()
register_fragments_extension()

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_SPANS_KEY",
    "Relation",
    "RelationAlignmentError",
    "RelationAlignmentWarning",
    "get_relations",
    "iter_records",
    "read_annotations",
    "realign_concepts",
    "register_extensions",
    "set_concepts",
    "set_relations",
    "set_span_attributes",
]
