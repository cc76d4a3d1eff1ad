"""The ``softprompt_ie`` pipeline component.

Data path, in one place:

1. ``predict``: each Doc is split into subwords (:func:`tokenize_doc`); concept
   queries tile it with windows; the network scores every candidate span for
   every query; scores from overlapping windows are merged by maximum.
2. Predicted concepts whose type heads relations (the schema's triggers) each
   get relation queries in a window centred on them (end-to-end).
3. ``set_annotations`` writes concepts to ``doc.spans[spans_key]`` (with
   scores) and ``doc.ents`` (non-overlapping selection), relations to
   ``doc._.relations``.

Training (``update``) builds the same queries from the gold annotations
(relation queries on gold triggers) and minimises binary cross-entropy over
all candidate spans.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import srsly
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from . import artifact
from .backbone import load_backbone, portable_reference, weights_hash
from .model import attach_network, get_network, settings_of
from .network import SoftPromptNetwork, prompt_init_from_words
from .queries import Batch, DocPieces, Query, QueryEncoder, label_words, tokenize_doc
from .relations import DEFAULT_SPANS_KEY, Relation, concept_spans, set_concepts, set_relations
from .schema import TaskSchema
from .scoring import score_examples

logger = logging.getLogger("spacy_softprompt")

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_softprompt.SoftPromptIE.v1"
backbone = "default"
strategy = "soft"
freeze_backbone = true
prompt_length = 16
prompt_init = "vocab"
reparametrize = false
prompt_layer = 0
max_length = 128
window_overlap = 32
max_span_width = 12
head_width = 128
dropout = 0.1
batch_size = 32
mixed_precision = false
trust_remote_code = false
"""


@Language.factory(
    "softprompt_ie",
    assigns=["doc.ents", "doc.spans", "doc._.relations"],
    default_config={
        "model": Config().from_str(DEFAULT_MODEL_CONFIG)["model"],
        "spans_key": DEFAULT_SPANS_KEY,
        "threshold": 0.5,
        "relation_threshold": 0.5,
        "set_ents": True,
        "store_backbone": False,
        "query_texts": {},
    },
    default_score_weights={
        "concepts_strict_f": 0.5,
        "relations_strict_f": 0.5,
        "concepts_strict_p": 0.0,
        "concepts_strict_r": 0.0,
        "concepts_lenient_f": 0.0,
        "relations_lenient_f": 0.0,
    },
)
def make_softprompt_ie(
    nlp: Language,
    name: str,
    model: Model[Batch, Any],
    spans_key: str,
    threshold: float,
    relation_threshold: float,
    set_ents: bool,
    store_backbone: bool,
    query_texts: Dict[str, str],
) -> "SoftPromptIE":
    """Clinical concepts (MRC span queries) and relations (verbalizer queries) with prompts.

    spans_key: span group receiving every predicted concept, with scores.
    threshold / relation_threshold: minimum probability of a concept / relation.
    set_ents: also write a non-overlapping selection of the concepts to doc.ents.
    store_backbone: save a frozen backbone inside the pipeline (self-contained)
        instead of a reference to it with a weight hash.
    query_texts: hard-prompt questions per concept or relation label (defaults
        are built from the label's words).
    """
    return SoftPromptIE(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        threshold=threshold,
        relation_threshold=relation_threshold,
        set_ents=set_ents,
        store_backbone=store_backbone,
        query_texts=query_texts,
    )


@dataclass
class Predictions:
    """Per doc: concepts ``(start, end, label, score)`` and relations
    ``((head start, head end, head label), label, (tail start, tail end), score)``."""

    concepts: List[List[Tuple[int, int, str, float]]]
    relations: List[List[Tuple[Tuple[int, int, str], str, Tuple[int, int], float]]] = field(default_factory=list)


class SoftPromptIE(TrainablePipe):
    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "softprompt_ie",
        *,
        spans_key: str = DEFAULT_SPANS_KEY,
        threshold: float = 0.5,
        relation_threshold: float = 0.5,
        set_ents: bool = True,
        store_backbone: bool = False,
        query_texts: Optional[Dict[str, str]] = None,
    ):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.cfg: Dict[str, Any] = {
            "spans_key": spans_key,
            "threshold": threshold,
            "relation_threshold": relation_threshold,
            "set_ents": set_ents,
            "store_backbone": store_backbone,
            "query_texts": dict(query_texts or {}),
            "schema": None,
            "backbone": None,
        }
        self.encoder: Optional[QueryEncoder] = None

    # --- properties ---------------------------------------------------------------
    @property
    def settings(self) -> Dict[str, Any]:
        return settings_of(self.model)

    @property
    def schema(self) -> TaskSchema:
        if self.cfg["schema"] is None:
            raise ValueError(f"Component '{self.name}' is not initialized: run nlp.initialize() first.")
        return TaskSchema.from_dict(self.cfg["schema"])

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["schema"]["concept_labels"]) if self.cfg["schema"] else ()

    @property
    def relation_labels(self) -> Tuple[str, ...]:
        return tuple(self.schema.relation_labels) if self.cfg["schema"] else ()

    @property
    def network(self) -> SoftPromptNetwork:
        return get_network(self.model)

    # --- building -------------------------------------------------------------------
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
        relation_schema: Optional[Dict[str, Dict[str, List[str]]]] = None,
    ) -> None:
        """Infer labels and the relation schema (unless given), load the backbone, build the network."""
        validate_get_examples(get_examples, "SoftPromptIE.initialize")
        key = self.cfg["spans_key"]
        gold_docs = [eg.reference for eg in get_examples()]  # one pass: reading a corpus is slow
        schema = TaskSchema.infer(gold_docs, key, labels, relation_schema)
        if not schema.concept_labels:
            raise ValueError(
                f"No concept labels for '{self.name}': the training data has no spans in "
                f"doc.spans[{key!r}] or doc.ents, and no labels were given in [initialize.components]."
            )
        backbone, tokenizer = load_backbone(
            self.settings["backbone"], trust_remote_code=self.settings["trust_remote_code"]
        )
        self.cfg["schema"] = schema.to_dict()
        self.cfg["backbone"] = {
            "name": portable_reference(self.settings["backbone"]),
            "sha256": weights_hash(backbone),
        }
        self._build(schema, backbone, tokenizer, fresh=True)
        too_long = sum(
            len(span) > self.settings["max_span_width"] for doc in gold_docs for span in concept_spans(doc, key)
        )
        if too_long:
            logger.warning(
                "%d gold spans are longer than max_span_width=%d tokens and cannot be learned; "
                "raise max_span_width to cover them.", too_long, self.settings["max_span_width"]
            )

    def _build(self, schema: TaskSchema, backbone: Any, tokenizer: Any, fresh: bool) -> None:
        s = self.settings
        self.encoder = QueryEncoder(
            tokenizer,
            schema,
            strategy=s["strategy"],
            prompt_length=s["prompt_length"],
            max_length=s["max_length"],
            window_overlap=s["window_overlap"],
            max_span_width=s["max_span_width"],
            query_texts=self.cfg["query_texts"],
            prompt_layer=s["prompt_layer"],
        )
        prompt_init = None
        if s["strategy"] in ("soft", "deep"):
            words = [self.encoder.text_ids(label_words(x)) for x in schema.concept_labels + schema.relation_labels]
            prompt_init = prompt_init_from_words(
                backbone.get_input_embeddings(), words, s["prompt_length"], s["prompt_init"]
            )
        network = SoftPromptNetwork(
            backbone,
            strategy=s["strategy"],
            n_prompts=self.encoder.n_prompts,
            prompt_length=s["prompt_length"],
            prompt_init=prompt_init,
            reparametrize=s["reparametrize"],
            n_outputs=self.encoder.n_outputs,
            max_span_width=s["max_span_width"],
            head_width=s["head_width"],
            dropout=s["dropout"],
            freeze_backbone=s["freeze_backbone"],
            prompt_layer=s["prompt_layer"],
        )
        if fresh and s["strategy"] == "deep":
            import torch

            ids = torch.from_numpy(self.encoder.prompt_only_ids())
            network.calibrate_deep_prompts(ids, self.encoder.prompt_start, prompt_init)
        attach_network(self.model, network)

    # --- prediction -----------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> Predictions:
        docs = list(docs)
        encoder = self._require_encoder()
        pieces = [tokenize_doc(doc, encoder.tokenizer) for doc in docs]
        concept_queries = [q for i, p in enumerate(pieces) for q in encoder.concept_queries(i, p)]
        cache: Optional[dict] = {} if encoder.late else None  # lower layers: once per window
        concept_hits = self._score_queries(concept_queries, pieces, self.cfg["threshold"], cache)
        concepts: List[List[Tuple[int, int, str, float]]] = [[] for _ in docs]
        for (doc_i, start, end, label), score in sorted(concept_hits.items()):
            concepts[doc_i].append((start, end, label, score))
        triggers = {
            i: [Span(doc, s, e, label=l) for s, e, l, _ in concepts[i] if l in encoder.schema.triggers]
            for i, doc in enumerate(docs)
        }
        relation_queries = [q for i, p in enumerate(pieces) for q in encoder.relation_queries(i, p, triggers[i])]
        relation_hits = self._score_queries(relation_queries, pieces, self.cfg["relation_threshold"], cache)
        relations: List[list] = [[] for _ in docs]
        for (doc_i, start, end, label, trigger), score in sorted(relation_hits.items()):
            relations[doc_i].append((trigger, label, (start, end), score))
        return Predictions(concepts, relations)

    def _score_queries(
        self, queries: List[Query], pieces: Sequence[DocPieces], threshold: float, cache: Optional[dict]
    ) -> Dict:
        """Run queries in length-sorted batches; keep candidates above threshold, max over windows."""
        encoder = self._require_encoder()
        hits: Dict[tuple, float] = {}
        for batch in self._batches(queries, pieces, with_targets=False):
            batch.cache = cache
            logits = self.model.ops.to_numpy(self.model.predict(batch))
            probs = sigmoid(logits, np)
            for b, t, w, k in zip(*np.nonzero((probs >= threshold) & batch.span_mask)):
                q = batch.queries[b]
                start = q.window[0] + int(t)
                key = (q.doc_index, start, start + int(w) + 1, encoder.output_label(q, int(k)))
                if q.trigger is not None:
                    key += ((q.trigger.start, q.trigger.end, q.trigger.label_),)
                    if key[3] not in encoder.schema.relations_for(q.trigger.label_):
                        continue
                score = float(probs[b, t, w, k])
                if score > hits.get(key, -1.0):
                    hits[key] = score
        return hits

    def _batches(self, queries: List[Query], pieces: Sequence[DocPieces], with_targets: bool) -> Iterator[Batch]:
        encoder = self._require_encoder()
        size = max(1, int(self.settings["batch_size"]))
        order = sorted(range(len(queries)), key=lambda i: _query_size(queries[i], pieces))
        for i in range(0, len(order), size):
            yield encoder.collate([queries[j] for j in order[i : i + size]], pieces, with_targets)

    def set_annotations(self, docs: Iterable[Doc], predictions: Predictions) -> None:
        schema = self._require_encoder().schema
        for doc, concepts, relations in zip(docs, predictions.concepts, predictions.relations):
            spans = [Span(doc, s, e, label=label) for s, e, label, _ in concepts]
            set_concepts(doc, spans, [c[3] for c in concepts], self.cfg["spans_key"], self.cfg["set_ents"])
            types_at: Dict[Tuple[int, int], List[Tuple[float, str]]] = defaultdict(list)
            for s, e, label, score in concepts:
                types_at[(s, e)].append((score, label))
            found = []
            for (h_start, h_end, h_label), label, (t_start, t_end), score in relations:
                allowed = schema.tail_types(h_label, label)
                predicted = [l for _, l in sorted(types_at[(t_start, t_end)], reverse=True) if l in allowed]
                tail_label = predicted[0] if predicted else allowed[0]
                head = Span(doc, h_start, h_end, label=h_label)
                found.append(Relation(head, Span(doc, t_start, t_end, label=tail_label), label, score))
            set_relations(doc, found)

    # --- training -------------------------------------------------------------------
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One optimizer step over all concept and gold-trigger relation queries of the examples
        (gradients accumulate over backbone batches of ``batch_size`` sequences)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "SoftPromptIE.update")
        queries, pieces = self._training_queries(examples)
        if not queries:
            return losses
        for batch in self._batches(queries, pieces, with_targets=True):
            logits, backprop = self.model.begin_update(batch)
            loss, d_logits = self.get_loss(batch, logits, n_queries=len(queries))
            backprop(d_logits)
            losses[self.name] += loss
        if sgd is not None:
            self.finish_update(sgd)
        return losses

    def get_loss(self, batch: Batch, logits: Any, n_queries: Optional[int] = None) -> Tuple[float, Any]:
        """Binary cross-entropy summed over candidate spans, averaged over queries.

        Takes the encoded ``batch`` (which carries the gold targets) rather than
        Examples, because one update spans several backbone batches.
        """
        xp = self.model.ops.xp
        targets = xp.asarray(batch.targets)
        mask = xp.asarray(batch.span_mask).astype(logits.dtype)
        probs = sigmoid(logits, xp)
        norm = float(n_queries or len(batch))
        d_logits = (probs - targets) * mask / norm
        eps = 1e-7
        bce = -(targets * xp.log(probs + eps) + (1 - targets) * xp.log(1 - probs + eps))
        return float((bce * mask).sum() / norm), d_logits

    def _training_queries(self, examples: List[Example]) -> Tuple[List[Query], List[DocPieces]]:
        encoder = self._require_encoder()
        key = self.cfg["spans_key"]
        queries: List[Query] = []
        pieces: List[DocPieces] = []
        for i, eg in enumerate(examples):
            doc = eg.predicted
            p = tokenize_doc(doc, encoder.tokenizer)
            pieces.append(p)
            gold = [_align(doc, s, s.label_) for s in concept_spans(eg.reference, key)]
            gold = [s for s in gold if s is not None]
            for q in encoder.concept_queries(i, p):
                q.gold = _gold_answers(encoder, q, ((s.label_, s) for s in gold))
                queries.append(q)
            by_trigger: Dict[Tuple[int, int, str], List[Tuple[str, Span]]] = defaultdict(list)
            for rel in eg.reference._.relations:
                head = _align(doc, rel.head, rel.head.label_)
                tail = _align(doc, rel.tail, rel.tail.label_)
                if head is not None and tail is not None:
                    by_trigger[(head.start, head.end, head.label_)].append((rel.label, tail))
            triggers = [s for s in gold if s.label_ in encoder.schema.triggers]
            for q in encoder.relation_queries(i, p, triggers):
                q.gold = _gold_answers(encoder, q, by_trigger[(q.trigger.start, q.trigger.end, q.trigger.label_)])
                queries.append(q)
        return queries, pieces

    def _require_encoder(self) -> QueryEncoder:
        if self.encoder is None:
            raise ValueError(
                f"Component '{self.name}' is not initialized: run nlp.initialize() before "
                "training, or load a trained pipeline with spacy.load()."
            )
        return self.encoder

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        return score_examples(examples, spans_key=self.cfg["spans_key"])

    def add_label(self, label: str) -> int:
        raise NotImplementedError(
            "softprompt_ie takes its labels from the training data or from "
            "[initialize.components.<name>] labels / relation_schema."
        )

    # --- serialization --------------------------------------------------------------
    def to_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> None:
        network = get_network(self.model) if self.model.shims else None
        embed = bool(self.cfg["store_backbone"] or not self.settings["freeze_backbone"])
        tokenizer = self.encoder.tokenizer if self.encoder is not None else None
        artifact.save_component(Path(path), self.cfg, network, tokenizer, embed)

    def from_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> "SoftPromptIE":
        path = Path(path)
        cfg = srsly.read_json(path / artifact.CFG_FILE)
        self.cfg.update({k: v for k, v in cfg.items() if k in self.cfg})
        if cfg.get("schema") is None or not (path / artifact.TRAINABLE_FILE).exists():
            return self  # saved before initialize: nothing learned yet
        backbone, tokenizer = artifact.load_backbone_for(path, cfg, self.settings["trust_remote_code"])
        self._build(TaskSchema.from_dict(cfg["schema"]), backbone, tokenizer, fresh=False)
        state = artifact.load_trainable(path)
        missing, unexpected = self.network.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("backbone.")]
        if missing or unexpected:
            raise ValueError(
                f"{path / artifact.TRAINABLE_FILE} does not fit this component's config "
                f"(missing: {missing[:5]}, unexpected: {unexpected[:5]}); was it saved with other settings?"
            )
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        return artifact.folder_to_bytes(lambda root: self.to_disk(root, exclude=exclude))

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SoftPromptIE":
        artifact.bytes_to_folder(bytes_data, lambda root: self.from_disk(root, exclude=exclude))
        return self


def sigmoid(x: Any, xp: Any) -> Any:
    """Overflow-free logistic function for numpy or cupy arrays."""
    return 0.5 * (1.0 + xp.tanh(0.5 * x))


def _gold_answers(encoder: QueryEncoder, query: Query, labelled: Iterable[Tuple[str, Span]]) -> List[Tuple[int, int, int]]:
    """Gold spans this query asks about, as (start, end, output column)."""
    answers = []
    for label, span in labelled:
        column = encoder.output_column(query, label)
        if column is not None:
            answers.append((span.start, span.end, column))
    return answers


def _align(doc: Doc, span: Span, label: str) -> Optional[Span]:
    """The same characters as a span of ``doc`` (whose tokenization may differ)."""
    if span.doc is doc:
        return span
    return doc.char_span(span.start_char, span.end_char, label=label, alignment_mode="expand")


def _query_size(query: Query, pieces: Sequence[DocPieces]) -> Tuple[int, int, int]:
    """Sort key: window length first; then the window itself, so that queries sharing a
    window share a batch (late prompts read each window's lower layers once per batch)."""
    start, end = query.window
    return int(pieces[query.doc_index].counts[start:end].sum()), query.doc_index, start
