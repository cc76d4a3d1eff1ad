"""The training strategies: what a query asks with, and what it answers into.

The paper's strategies differ in the *query part* of each backbone sequence
``[CLS] <query part> [SEP] <text window> [SEP]`` and in what learns:

- ``none``: no query part; one pass answers every type through typed outputs
  (fine-tuning without prompts);
- ``hard``: the words of a natural-language question per type;
- ``soft``: ``prompt_length`` learned vectors per type, at the input (or at
  layer ``k`` with late prompts);
- ``deep``: learned vectors per type written at every layer (P-tuning v2);
- ``hard_soft`` / ``hard_deep``: the question of ``hard`` after one block of
  ``prompt_length`` learned vectors shared by every query (at the input, or at
  every layer): the description says which type is asked, the shared prompt
  learns how to ask, so a type added later by its description is asked with
  everything the prompt learned.

Whether the backbone is frozen is a separate switch. Each strategy is one
class here, registered in :data:`STRATEGIES` by name; adding a strategy means
adding a class. Nothing outside this module compares strategy names: the
rest of the package asks the strategy object.

Prompt rows ("prompt ids") number concept types first, then relation types,
then document classes; ``none`` uses row 0 for all concepts and row
``n_concepts`` for all relations.

Classification queries (``cat_jobs``) are asked exactly as concept queries
are: one query per class with its own part (hard, soft, deep), every class in
one query (packed), or one query without a part answering every class in
fixed columns (``none``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

#: where a shared prompt (hard_soft, hard_deep) starts with ``prompt_init = "vocab"``: an instruction
SHARED_PROMPT_TEXT = "find each span of the text that answers the question"

#: how the packed head (nn/span_head.TypeMatchingSpanHead) matches a span with a type's part
TYPE_SCORING = ("dot", "cosine")

# (prompt rows in the query part, first output column, number of output columns, relation asked or None)
Job = Tuple[Tuple[int, ...], int, int, Optional[str]]


@dataclass
class Labels:
    """The label inventory a strategy answers over, in output order."""

    concepts: List[str]
    relations: List[str]
    cats: List[str] = field(default_factory=list)  # document classes (doc.cats)

    @property
    def n_prompts(self) -> int:
        return len(self.concepts) + len(self.relations) + len(self.cats)

    @property
    def first_cat_row(self) -> int:
        return len(self.concepts) + len(self.relations)

    def row(self, kind: str, label: str) -> int:
        """The prompt row that asks ``label``: concept types first, then relation types, then
        document classes (``kind``: "concept", "relation", "cat"), each in inventory order."""
        names, first = {"concept": (self.concepts, 0), "relation": (self.relations, len(self.concepts)),
                        "cat": (self.cats, self.first_cat_row)}[kind]
        return first + names.index(label)


class Strategy:
    """How queries are asked and answered; subclasses set the class attributes.

    ``packed``: one query per window asks every concept type (and one per
    trigger every relation type): the query part holds each type's part in
    turn, and each type is answered by matching candidate spans against the
    output states of its own part (typed outputs, one pass for all types).
    """

    name: ClassVar[str]
    #: learned prompt vectors (needs an initialisation from the label words)
    learned: ClassVar[bool] = False
    #: learned prompts written at the input of every layer from the first prompt layer
    deep: ClassVar[bool] = False
    #: a query carries a part of its own (a question or prompt slots); ``none`` has none
    has_query_part: ClassVar[bool] = True
    #: one block of learned vectors shared by every query, before the types' questions
    shared_prompt: ClassVar[bool] = False
    #: a type is asked by the words of its description (so a new type needs only a description)
    asks_description: ClassVar[bool] = False

    def __init__(
        self, labels: Labels, prompt_length: int, questions: Optional[Sequence[Sequence[int]]] = None,
        packed: bool = False,
    ):
        self.labels = labels
        self.prompt_length = prompt_length if self.learned else 0
        self.questions = [list(q) for q in questions or []]
        self.packed = packed

    @property
    def typed_outputs(self) -> bool:
        """One query answers every type, in typed output columns (else one binary output)."""
        return self.packed

    @property
    def matches_type_parts(self) -> bool:
        """Typed outputs scored against each type's own query part (packed prompts)."""
        return self.packed

    @property
    def type_is_query(self) -> bool:
        """Whether a concept type is asked through its own query part and answered without an
        output weight of its own (one binary output per query, or spans matched against the
        type's part when packed). Only then can a trained component take a new type from its
        description, zero-shot: ``none``'s typed output columns have no column for it."""
        return not self.typed_outputs or self.matches_type_parts

    # --- what a query holds ------------------------------------------------------
    @property
    def shared_slots(self) -> int:
        """Slots of the shared prompt at the start of every query part (0: none)."""
        return self.prompt_length if self.shared_prompt else 0

    @property
    def n_prompt_rows(self) -> int:
        """Rows of the learned prompt table: one per type, or the one shared by all."""
        return 1 if self.shared_prompt else self.labels.n_prompts

    def prompt_rows(self, rows: Sequence[int]) -> Tuple[int, ...]:
        """The learned-prompt rows written into a query asking ``rows``, in order."""
        return (0,) if self.shared_prompt else tuple(rows)

    def part_ids(self, row: int, pad_id: int) -> List[int]:
        """One row's part: slots that learned vectors overwrite, or a question."""
        return [pad_id] * self.prompt_length

    def query_part_ids(self, rows: Sequence[int], pad_id: int) -> List[int]:
        return [pad_id] * self.shared_slots + [i for row in rows for i in self.part_ids(row, pad_id)]

    def query_part_len(self, rows: Sequence[int]) -> int:
        return len(self.query_part_ids(rows, 0))

    def has_input_prompts(self, prompt_layer: int) -> bool:
        """Whether learned vectors are written at the input (deep late prompts start at layer ``k``)."""
        return self.learned and (not self.deep or prompt_layer == 0)

    def lower_layers_read_query_part(self, prompt_layer: int) -> bool:
        """Late prompts: whether the query part goes through layers below ``k`` on its own
        (a question or input prompts do; deep late prompts are written at layer ``k``)."""
        return self.query_part_len((0,)) > 0

    # --- what a query answers -------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        """Span output columns (document classes have their own head)."""
        return len(self.labels.concepts) + len(self.labels.relations) if self.typed_outputs else 1

    def concept_jobs(self) -> List[Job]:
        n = len(self.labels.concepts)
        if n == 0:
            return []
        if self.typed_outputs:
            return [(tuple(range(n)) if self.packed else (), 0, n, None)]
        return [((c,), 0, 1, None) for c in range(n)]

    def relation_jobs(self, relations: Sequence[str]) -> List[Job]:
        """The queries a trigger heading ``relations`` asks."""
        n, n_rel = len(self.labels.concepts), len(self.labels.relations)
        if self.packed:  # columns per trigger; the query builder gives each trigger its block
            return [(tuple(range(n, n + n_rel)), 0, n_rel, None)]
        if self.typed_outputs:
            return [((), n, n_rel, None)]
        return [((self.labels.row("relation", r),), 0, 1, r) for r in relations]

    def cat_jobs(self) -> List[Job]:
        """The classification queries of a window: like concept queries, one per class
        (its own part), or one asking every class (packed, or ``none`` without a part)."""
        n, first = len(self.labels.cats), self.labels.first_cat_row
        if n == 0:
            return []
        if self.typed_outputs:
            return [(tuple(range(first, first + n)) if self.packed else (), 0, n, None)]
        return [((self.labels.row("cat", label),), 0, 1, None) for label in self.labels.cats]

    def cat_label(self, column: int, rows: Sequence[int]) -> str:
        """The class an output column of a classification query answers."""
        if self.typed_outputs:
            return self.labels.cats[column]
        return self.labels.cats[rows[0] - self.labels.first_cat_row]

    def output_column(self, relation: Optional[str], is_relation: bool, label: str, rows: Sequence[int]) -> Optional[int]:
        """The output column that answers ``label`` in a query (None: it does not ask)."""
        names = self.labels.relations if is_relation else self.labels.concepts
        if label not in names:
            return None
        if self.matches_type_parts:  # column c answers the query's c-th part
            row = self.labels.row("relation" if is_relation else "concept", label)
            return rows.index(row) if row in rows else None
        if self.typed_outputs:  # fixed columns (none): concepts, then relations
            offset = len(self.labels.concepts) if is_relation else 0
            return offset + names.index(label)
        if is_relation:
            return 0 if relation == label else None
        return 0 if self.labels.concepts[rows[0]] == label else None

    def output_label(self, relation: Optional[str], is_relation: bool, column: int, rows: Sequence[int]) -> str:
        """Inverse of :meth:`output_column`."""
        if self.matches_type_parts:
            return self.labels.relations[rows[column] - len(self.labels.concepts)] if is_relation else \
                self.labels.concepts[rows[column]]
        if self.typed_outputs:
            if is_relation:
                return self.labels.relations[column - len(self.labels.concepts)]
            return self.labels.concepts[column]
        if is_relation:
            assert relation is not None
            return relation
        return self.labels.concepts[rows[0]]

    # --- the learned part ------------------------------------------------------------
    def build_prompts(self, *, dim: int, n_layers: int, prompt_layer: int, init: Any, reparametrize: bool) -> Any:
        """The torch module holding this strategy's learned vectors (None: it has none)."""
        return None


class NoPrompt(Strategy):
    """Fine-tuning without prompts: no query part, typed outputs (fixed output columns),
    one pass per window for all concepts."""

    name = "none"
    has_query_part = False

    def __init__(self, labels, prompt_length, questions=None, packed=False):
        if packed:
            raise ValueError("strategy 'none' already answers every type in one pass; packed is for hard, soft and deep.")
        super().__init__(labels, prompt_length, questions)

    @property
    def typed_outputs(self) -> bool:
        return True


class AsksQuestion:
    """Mixin: a type's part is its question (its description), so a type is asked by its words."""

    asks_description = True
    questions: List[List[int]]

    def part_ids(self, row: int, pad_id: int) -> List[int]:
        return list(self.questions[row])


class HardPrompt(AsksQuestion, Strategy):
    """A natural-language question per type (``query_texts`` or built from the label)."""

    name = "hard"


class SoftPrompt(Strategy):
    """``prompt_length`` learned vectors per type over the query part's slots."""

    name = "soft"
    learned = True

    def build_prompts(self, *, dim, n_layers, prompt_layer, init, reparametrize):
        from .nn.prompts import PromptTable

        return PromptTable(init, n_deep_layers=0, reparametrize=reparametrize, input_prompts=True)


class DeepPrompt(SoftPrompt):
    """Learned vectors per type at every layer from the first prompt layer on."""

    name = "deep"
    deep = True

    def lower_layers_read_query_part(self, prompt_layer: int) -> bool:
        return self.has_input_prompts(prompt_layer)

    def build_prompts(self, *, dim, n_layers, prompt_layer, init, reparametrize):
        from .nn.prompts import PromptTable

        n_deep = n_layers - first_deep_layer(prompt_layer)
        return PromptTable(init, n_deep_layers=n_deep, reparametrize=reparametrize,
                           input_prompts=self.has_input_prompts(prompt_layer))


class HardSoftPrompt(AsksQuestion, SoftPrompt):
    """The type's question after a shared block of learned input vectors."""

    name = "hard_soft"
    shared_prompt = True


class HardDeepPrompt(AsksQuestion, DeepPrompt):
    """The type's question after a shared block of learned vectors written at every layer."""

    name = "hard_deep"
    shared_prompt = True

    def lower_layers_read_query_part(self, prompt_layer: int) -> bool:
        return True  # the questions are words: layers below k read them


def first_deep_layer(prompt_layer: int) -> int:
    """Deep prompts are written from layer 1 after input prompts, from layer ``k`` when late."""
    return prompt_layer or 1


STRATEGIES: Dict[str, Type[Strategy]] = {
    cls.name: cls for cls in (NoPrompt, HardPrompt, SoftPrompt, DeepPrompt, HardSoftPrompt, HardDeepPrompt)
}


def strategy_class(name: str) -> Type[Strategy]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"Unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}.") from None
