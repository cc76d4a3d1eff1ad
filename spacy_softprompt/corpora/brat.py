"""brat standoff (``.txt`` + ``.ann``) to spaCy Docs and back.

Reading turns text-bound annotations (``T``) into labelled spans in
``doc.spans[spans_key]`` (a non-overlapping selection also in ``doc.ents``),
binary relations (``R``), event arguments (``E``) and equivalences (``*``)
into :class:`~spacy_softprompt.relations.Relation` objects, and attributes
(``A``/``M``) into ``span._.attributes``. Every annotation either arrives or
is counted, with its reason, in the :class:`ConversionSummary`.

Policies (each one is counted in the summary when it applies):

- Offsets count every character of the ``.txt`` as stored (``\\r`` included);
  the file is read as UTF-8 without newline translation.
- A discontinuous span (``0 5;9 14``) is kept: its covering span (first start
  to last end) goes to the span group, which is what the model trains on, and
  its fragments to ``span._.fragments`` (:mod:`spacy_softprompt.fragments`).
- Surrounding whitespace of the ``.txt`` is trimmed, then a span that does not
  sit on token boundaries is expanded to them; the offsets as written stay in
  ``span._.fragments``. A span that is empty or whitespace only is not
  converted.
- T lines with the same fragments and label are one annotation (merged). T
  lines with other offsets that end on the same covering span and label are
  one span with two fragment variants: never merged, each keeps its relations
  and attributes for export.
- A relation whose head and tail end on one span and label is kept as a
  self-relation and counted, saying whether both arguments are the same
  annotation in the file or two annotations sharing a covering span.
  Identical relation lines become one; different lines that become the same
  span-level relation are one relation in the Doc and both stay for export.
- The ``.ann`` text field is a copy of the ``.txt`` at the offsets, and the
  check that they agree catches offsets that do not belong to the text
  (shifted, CRLF/encoding changes, wrong file). ``text_check`` sets how
  strict the check is: ``"strict"`` (any difference is an error),
  ``"tolerant"`` (the default: a difference inside the span is accepted as an
  adjustment when both strings start and end with the same character,
  ignoring case, and are at least 80 % similar; this accepts the SDoH
  corpus's upstream search-and-replace ``State`` -> ``Status`` while an
  offset shift or a wrong end still fails), ``"offsets"`` (never compare).
  Trailing whitespace of the text field is never significant. A text field
  that continues on the next line(s) (the span crosses a line break), or that
  lacks the ``\\r`` of a CRLF, matches when it equals the ``.txt`` with ``\\r``
  ignored; a space where the ``.txt`` has a line break also matches. Each is
  counted with its own reason. A text field that continues takes as many
  lines as the span crosses line breaks, and is then compared as
  ``text_check`` says.
- Event arguments become relations from the trigger to the argument, labelled
  with the role; a numbered role (``Type2``) loses its number, and a role
  that is only a number (or empty) is a broken line. An event
  without arguments keeps only its trigger entity. Relations whose arguments
  are event ids use the event's trigger.
- A binary relation's arguments are read by name: ``Arg1`` is the head,
  wherever it is written; arguments with other names are read in the order
  written (the first is the head); two arguments with one name are an error.
- An equivalence ``*\\tOVERLAP E1 E2 E3`` becomes relations between
  consecutive members (``E1-E2``, ``E2-E3``) labelled with its type.
- Notes (``#``) and normalizations (``N``) are not converted; each is checked
  (its form, and that the id it is about is in the file) and counted.
- Every ``E``, ``R``, ``*`` and ``A`` line is also kept as written
  (:mod:`.brat_store`), so ``write_brat`` gives back the same annotations.
- Malformed input (offsets, ids, encodings, broken lines) is an error naming
  file:line and what the line should look like; ``lenient`` counts it and goes on.

The reader is :mod:`.brat_read`, :mod:`.brat_lines` and :mod:`.brat_ann`, the writer
:mod:`.brat_write`, the summary's reasons :mod:`.brat_reasons`.
"""

from __future__ import annotations

from ..fragments import get_fragments, set_fragments  # noqa: F401  (registers span._.fragments)
from .brat_lines import differs_inside as _differs_inside  # noqa: F401
from .brat_lines import parse_offsets as _parse_offsets  # noqa: F401
from .brat_reasons import *  # noqa: F401,F403  (the summary's reasons, under their old names)
from .brat_reasons import argument_not_converted, duplicate_relation, self_relation, shared_relation  # noqa: F401
from .brat_read import TEXT_CHECKS, read_brat  # noqa: F401
from .brat_write import line_fragments as _line_fragments  # noqa: F401
from .brat_write import write_brat  # noqa: F401
from .summary import ConversionSummary, CorpusFormatError  # noqa: F401

__all__ = ["read_brat", "write_brat", "ConversionSummary", "CorpusFormatError", "TEXT_CHECKS"]
