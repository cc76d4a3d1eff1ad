"""The ``softprompt_ie`` pipeline component.

Data path, in one place:

1. ``predict``: each Doc is split into subwords (:mod:`.pieces`); concept
   queries tile it with windows (:mod:`.queries`); the model scores every
   candidate span of every query in batches (:mod:`.collate`, :mod:`.model`);
   hits above the threshold are merged over windows (:mod:`.decoding`).
   Document classes, when the task has them, are classification queries on
   the same windows and in the same batches' path; their logits are pooled
   over each Doc's windows (:mod:`.nn.cats`).
2. Predicted concepts whose type heads relations (the schema's triggers) each
   get relation queries (end-to-end), scored the same way.
3. ``set_annotations`` writes concepts to ``doc.spans[spans_key]`` (with
   scores; every relation argument is one), a non-overlapping selection to
   ``doc.ents``, relations to ``doc._.relations`` and classes to ``doc.cats``.

Training (``update``) builds the same queries from the gold annotations
(:mod:`.targets`, relation queries on gold triggers) and minimises binary
cross-entropy over all candidate spans, one backward pass per backbone batch,
plus the classes' loss over each Doc's pooled logits (its batches' backward
passes wait for the whole update's classification logits).

Several corpora: a Doc tagged with its corpus (``doc._.corpus``) is asked, and
supervised on, only the types its corpus annotates (:mod:`.schema`); a Doc
without a tag is asked every type. A concept type can be added to a trained
component from its description (``add_label`` or the ``new_labels`` setting)
and is asked zero-shot, as a query of its own.
"""

import difflib
import logging
import math
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import srsly
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from wasabi import msg
from thinc.api import Config, Model, Optimizer, set_dropout_rate, torch2xp, xp2torch

from .collate import Batch
from .decoding import Predictions, annotations, cat_entries, collect_hits, concepts_by_doc, relations_by_doc
from .model import SoftPromptModel
from .pieces import DocPieces, tokenize_doc
from .queries import Query, batch_kind, query_size
from .relations import DEFAULT_SPANS_KEY, concept_spans, corpus_of, set_concepts, set_relations
from .schema import TaskSchema, check_label_names
from .scoring import DEFAULT_SCORE_WEIGHTS
from .targets import gold_cats, training_queries

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
backbone_family = null
packed = false
packed_types = "all"
shuffle_types = false
type_scoring = "dot"
cache_frozen_states = true
adapter = null
device_map = null
max_memory = null
offload_folder = null
cats_text_pooling = "mean"
head_lr_scale = 1.0
cats_bag_of_words = false
"""


@Language.factory(
    "softprompt_ie",
    assigns=["doc.ents", "doc.spans", "doc._.relations", "doc.cats"],
    default_config={
        "model": Config().from_str(DEFAULT_MODEL_CONFIG)["model"],
        "spans_key": DEFAULT_SPANS_KEY,
        "threshold": 0.5,
        "relation_threshold": 0.5,
        "set_ents": True,
        "store_backbone": False,
        "query_texts": {},
        "exclusive_classes": False,
        "cats_pooling": "max",
        "cats_loss_weight": 1.0,
        "new_labels": {},
        "label_thresholds": {},
        "scorer": {"@scorers": "spacy_softprompt.scorer.v1"},
    },
    default_score_weights=DEFAULT_SCORE_WEIGHTS,
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
    exclusive_classes: bool,
    cats_pooling: str,
    cats_loss_weight: float,
    new_labels: Dict[str, str],
    label_thresholds: Dict[str, float],
    scorer: Optional[Callable],
) -> "SoftPromptIE":
    """Clinical concepts (MRC span queries) and relations (verbalizer queries) with prompts.

    spans_key: span group receiving every predicted concept, with scores.
    threshold / relation_threshold: minimum probability of a concept / relation.
    set_ents: also write a non-overlapping selection of the concepts to doc.ents.
    store_backbone: save a frozen backbone inside the pipeline (self-contained)
        instead of a reference to it with a weight hash.
    query_texts: hard-prompt questions per concept, relation or document class label
        (defaults are built from the label's words).
    exclusive_classes: document classes (the training data's ``doc.cats``) are one of N
        (softmax, as spaCy's ``textcat``), or each yes/no (sigmoid, ``textcat_multilabel``).
    cats_pooling: how a long Doc's class logits are pooled over its windows: "max" or "mean".
    cats_loss_weight: the document classes' loss (and gradient) times this, added to the span
        queries' loss: with concepts learned beside the classes, their loss (summed over every
        candidate span) can be a hundred times the classes' and steer the shared backbone.
    new_labels: concept label -> description: types a trained component takes from their
        descriptions, zero-shot, when it is initialized or loaded (as ``add_label(label,
        description=...)``); needs a strategy with a query part (not none).
    label_thresholds: concept label -> its own minimum probability, in place of ``threshold``
        (e.g. a type added by description, whose scores sit below the trained types': the
        ``calibrate`` verb chooses it on unlabelled notes).
    scorer: what ``score()`` calls; the default gives strict and lenient concept and
        relation scores (n2c2 2018), spaCy's own ``ents_*`` and ``spans_<key>_*`` keys, and
        spaCy's ``cats_*`` keys when the pipeline has document classes.
    """
    check_thresholds(threshold, relation_threshold)
    for option, texts in (("query_texts", query_texts), ("new_labels", new_labels)):
        wrong = {label: text for label, text in texts.items() if not _is_words(text)}
        if wrong:
            raise ValueError(f"{option} maps a label to the words that describe it, not {wrong}.")
    if not cats_loss_weight > 0.0:
        raise ValueError(f"cats_loss_weight multiplies the classes' loss: above 0, not {cats_loss_weight}.")
    from .nn.cats import POOLING

    if cats_pooling not in POOLING:
        raise ValueError(f"cats_pooling must be one of {POOLING}, not {cats_pooling!r}.")
    return SoftPromptIE(
        nlp.vocab, model, name, spans_key=spans_key, threshold=threshold,
        relation_threshold=relation_threshold, set_ents=set_ents, store_backbone=store_backbone,
        query_texts=query_texts, exclusive_classes=exclusive_classes, cats_pooling=cats_pooling,
        cats_loss_weight=cats_loss_weight, new_labels=new_labels, label_thresholds=label_thresholds, scorer=scorer,
    )


class SoftPromptIE(TrainablePipe):
    model: SoftPromptModel

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
        exclusive_classes: bool = False,
        cats_pooling: str = "max",
        cats_loss_weight: float = 1.0,
        new_labels: Optional[Dict[str, str]] = None,
        label_thresholds: Optional[Dict[str, float]] = None,
        scorer: Optional[Callable] = None,
    ):
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "spans_key": spans_key,
            "threshold": threshold,
            "relation_threshold": relation_threshold,
            "set_ents": set_ents,
            "query_texts": dict(query_texts or {}),
            "exclusive_classes": exclusive_classes,
            "cats_pooling": cats_pooling,
            "cats_loss_weight": cats_loss_weight,
            "new_labels": dict(new_labels or {}),
            "label_thresholds": dict(label_thresholds or {}),
        }
        self.cfg[BUILT_WITH] = configured_settings(self.cfg)
        model.attrs["store_backbone"] = store_backbone
        self._asks_relations = True  # off inside concepts_only()

    @property
    def schema(self) -> TaskSchema:
        return self.model.builder.schema

    @property
    def labels(self) -> Tuple[str, ...]:
        task = self.model.attrs["task"]
        return tuple(task["schema"]["concept_labels"]) if task else ()

    @property
    def relation_labels(self) -> Tuple[str, ...]:
        return tuple(self.schema.relation_labels) if self.model.attrs["task"] else ()

    @property
    def cat_labels(self) -> Tuple[str, ...]:
        """Document classes written to ``doc.cats`` (empty: the pipeline classifies nothing)."""
        return tuple(self.schema.cat_labels) if self.model.attrs["task"] else ()

    @property
    def network(self) -> Any:
        return self.model.network

    # --- building -------------------------------------------------------------------
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
        relation_schema: Optional[Dict[str, Dict[str, List[str]]]] = None,
        cat_labels: Optional[List[str]] = None,
        corpus_labels: Optional[Dict[str, List[str]]] = None,
    ) -> None:
        """Infer labels, the relation schema, the document classes (the keys of the
        training data's ``doc.cats``) and the labels each corpus annotates (per
        ``doc._.corpus``) unless given, then build the model."""
        validate_get_examples(get_examples, "SoftPromptIE.initialize")
        key = self.cfg["spans_key"]
        gold_docs = [eg.reference for eg in get_examples()]  # one pass: reading a corpus is slow
        others = [name for name in (nlp.pipe_names if nlp is not None else []) if name != self.name
                  and "doc.cats" in nlp.get_pipe_meta(name).assigns  # a softprompt_ie without classes writes none
                  and not (isinstance(nlp.get_pipe(name), SoftPromptIE) and not nlp.get_pipe(name).cat_labels)]
        if cat_labels is None and others and any(doc.cats for doc in gold_docs):
            cat_labels = []  # taken from the data, the classes would overwrite the other component's doc.cats
            logger.warning("'%s' leaves the training data's doc.cats to %s, which writes them too; give "
                           "[initialize.components.%s] cat_labels to classify here as well.",
                           self.name, ", ".join(others), self.name)
        schema = TaskSchema.infer(gold_docs, key, labels, relation_schema, cat_labels, corpus_labels)
        if not schema.concept_labels and not schema.cat_labels:
            raise ValueError(
                f"No concept labels for '{self.name}': the training data has no spans in "
                f"doc.spans[{key!r}] or doc.ents, no doc.cats, and no labels were given in "
                "[initialize.components]."
            )
        if schema.cat_labels and not schema.concept_labels and nlp is not None:
            weights = nlp.config.get("training", {}).get("score_weights") or {}
            if not any(weight for key, weight in weights.items() if key.startswith("cats_")):
                logger.warning(
                    "'%s' classifies documents and has no concept types, but [training.score_weights] weighs "
                    "no cats_* score, so spacy train's model-best would be chosen on scores that stay 0: "
                    "set cats_score = 1.0 there (and the others to 0).", self.name
                )
        exclusive = self.cfg["exclusive_classes"]
        if exclusive and len(schema.cat_labels) == 1:
            raise ValueError(
                f"'{self.name}' has one document class ({schema.cat_labels[0]!r}) and exclusive_classes = true: "
                "one class alone always wins, and nothing is learned. Give its alternative a class of its own, "
                "or set exclusive_classes = false (a yes/no score for the one class)."
            )
        gold, known = gold_cats(schema.cat_labels, [d for d in gold_docs if d.cats], exclusive)
        unlearned = int((known.any(-1) & (gold.sum(-1) == 0)).sum()) if exclusive else 0
        if unlearned:
            logger.warning(
                "%d training docs with cats give no class the value 1.0, which exclusive_classes = true "
                "needs; they are not learned from.", unlearned
            )
        self.model.attrs["task"] = {"schema": schema.to_dict(), "query_texts": self.cfg["query_texts"]}
        self.model.initialize()
        self._add_new_labels(self.cfg["new_labels"])
        self._check_label_thresholds()
        self._warn_misspelt_descriptions(schema)
        if self.model.caches_frozen_states:
            self._announce_frozen_cache(gold_docs)
        width = self.model.settings["max_span_width"]
        too_long = sum(len(span) > width for doc in gold_docs for span in concept_spans(doc, key))
        if too_long:
            logger.warning(
                "%d gold spans are longer than max_span_width=%d tokens and cannot be learned; "
                "raise max_span_width to cover them.", too_long, width
            )

    def _announce_frozen_cache(self, docs: Sequence[Doc]) -> None:
        """Say how much memory the frozen lower-layer states of the training windows take."""
        builder = self.model.builder
        n_windows = n_subwords = 0
        for doc in docs:
            pieces = tokenize_doc(doc, builder.tokenizer)
            for start, end in builder.tiles(pieces):
                n_windows += 1
                n_subwords += int(pieces.counts[start:end].sum()) + 2
        dim = self.model.network.backbone.config.hidden_size
        msg.info(
            f"{self.name}: frozen layers below prompt_layer={self.model.settings['prompt_layer']} run once per "
            f"training window ({n_windows} windows, {n_subwords} subwords): about "
            f"{n_subwords * dim * 4 / 2**20:.1f} MB kept in memory (cache_frozen_states = false to turn off)"
        )

    # --- prediction -----------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> Predictions:
        docs = list(docs)
        builder = self.model.builder
        pieces = [tokenize_doc(doc, builder.tokenizer) for doc in docs]
        answered: List[Tuple[Batch, Any]] = []
        with self.model.shared_lower_states():
            asked = [builder.schema.asked(corpus_of(doc)) for doc in docs]
            queries = [
                q for i, p in enumerate(pieces)
                for q in builder.concept_queries(i, p, asked[i]) + builder.cat_queries(i, p)
            ]
            hits = self._score(queries, pieces, self.cfg["threshold"], answered, self.cfg["label_thresholds"])
            concepts = concepts_by_doc(hits, len(docs))
            triggers = builder.schema.triggers if self._asks_relations else {}
            relation_queries = [
                q
                for i, (doc, p) in enumerate(zip(docs, pieces))
                for q in builder.relation_queries(
                    i, p, [Span(doc, s, e, label=l) for s, e, l, _ in concepts[i] if l in triggers], asked[i]
                )
            ]
            hits = self._score(relation_queries, pieces, self.cfg["relation_threshold"])
        return Predictions(concepts, relations_by_doc(hits, len(docs)), self._doc_cats(answered, len(docs)))

    @contextmanager
    def concepts_only(self) -> Iterator[None]:
        """Predict concepts (and document classes) without asking any relation: the span group then
        holds what the concept queries found alone, not also the relation arguments that relations
        add (as ``calibrate`` counts a type), and no trigger costs relation queries."""
        self._asks_relations = False
        try:
            yield
        finally:
            self._asks_relations = True

    def _score(
        self, queries: List[Query], pieces: Sequence[DocPieces], threshold: float,
        answered: Optional[List[Tuple[Batch, Any]]] = None, label_thresholds: Optional[Dict[str, float]] = None,
    ) -> Dict[tuple, float]:
        """Span hits of the queries (at ``threshold``, or a label's own); classification batches and
        their logits go to ``answered``."""
        hits: Dict[tuple, float] = {}
        for batch in self._batches(queries, pieces, with_targets=False):
            logits = self.model.ops.to_numpy(self.model.predict(batch))
            if batch.cat_pool is not None:
                answered.append((batch, logits))
            else:
                collect_hits(self.model.builder, batch, logits, threshold, hits, label_thresholds)
        return hits

    def _doc_cats(self, answered: List[Tuple[Batch, Any]], n_docs: int) -> List[Dict[str, float]]:
        """Each Doc's class scores: window logits pooled (:func:`~.nn.cats.pool_windows`), then
        softmax (exclusive) or sigmoid."""
        labels = list(self.cat_labels)
        if not labels:
            return []
        import torch

        from .nn.cats import pool_windows, probabilities

        values, cells = [], []
        for batch, logits in answered:
            for b, column, doc_i, j in cat_entries(batch):
                values.append(float(logits[b, column]))
                cells.append(doc_i * len(labels) + j)
        pooled = pool_windows(
            torch.tensor(values, dtype=torch.float32), torch.tensor(cells, dtype=torch.long),
            n_docs * len(labels), self.cfg["cats_pooling"],
        )
        probs = probabilities(pooled.reshape(n_docs, len(labels)), self.cfg["exclusive_classes"]).numpy()
        return [{label: float(p) for label, p in zip(labels, row)} for row in probs]

    def _batches(self, queries: List[Query], pieces: Sequence[DocPieces], with_targets: bool) -> Iterator[Batch]:
        """Batches of ``batch_size`` queries of one kind (:func:`~.queries.batch_kind`)."""
        size = int(self.model.settings["batch_size"])
        pieces = list(pieces)
        chunk: List[Query] = []
        for query in sorted(queries, key=lambda q: query_size(q, pieces)):
            if chunk and (len(chunk) == size or batch_kind(query) != batch_kind(chunk[0])):
                yield self.model.collator.collate(chunk, pieces, with_targets)
                chunk = []
            chunk.append(query)
        if chunk:
            yield self.model.collator.collate(chunk, pieces, with_targets)

    def set_annotations(self, docs: Iterable[Doc], predictions: Predictions) -> None:
        schema = self.schema
        for doc, concepts, relations in zip(docs, predictions.concepts, predictions.relations):
            spans, scores, found = annotations(doc, concepts, relations, schema)
            set_concepts(doc, spans, scores, self.cfg["spans_key"], self.cfg["set_ents"])
            set_relations(doc, found, source=self.cfg["spans_key"])
        for doc, cats in zip(docs, predictions.cats):
            doc.cats.update(cats)

    # --- training -------------------------------------------------------------------
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One optimizer step over all concept, classification and gold-trigger relation queries
        of the examples (gradients accumulate over backbone batches of ``batch_size`` sequences;
        classification batches are backpropagated once the Docs' pooled loss is known)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "SoftPromptIE.update")
        queries, pieces = training_queries(self.model.builder, examples, self.cfg["spans_key"])
        if not queries:
            return losses
        set_dropout_rate(self.model, drop)
        n_span_queries = sum(not q.cats for q in queries)
        classified: List[Tuple[Batch, Any, Callable]] = []
        for batch in self._batches(queries, pieces, with_targets=True):
            logits, backprop = self.model.begin_update(batch)
            if batch.cat_pool is not None:
                classified.append((batch, logits, backprop))
                continue
            loss, d_logits = self.get_loss(examples, (batch, logits, n_span_queries))
            backprop(d_logits)
            losses[self.name] += loss
        if classified:
            weight = self.cfg["cats_loss_weight"]
            loss, d_logits = self.get_cats_loss(examples, [(b, l) for b, l, _ in classified])
            for (_, _, backprop), d in zip(classified, d_logits):
                backprop(d * weight if weight != 1.0 else d)
            losses[self.name] += weight * loss
        if sgd is not None:
            self.finish_update(sgd)
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Tuple[Batch, Any, int]) -> Tuple[float, Any]:
        """Binary cross-entropy over the candidate spans of one backbone batch. ``scores``:
        the batch (which carries the gold targets made from ``examples``), its logits, and
        the number of queries of the whole update, over which the loss is averaged."""
        from .nn.loss import span_bce

        batch, logits, n_queries = scores
        xp = self.model.ops.xp
        loss, grad = span_bce(
            xp2torch(logits), xp2torch(xp.asarray(batch.targets)), xp2torch(xp.asarray(batch.span_mask)),
            n_queries,
        )
        return loss, torch2xp(grad, ops=self.model.ops)

    def get_cats_loss(self, examples: Sequence[Example], answered: List[Tuple[Batch, Any]]) -> Tuple[float, List[Any]]:
        """The document classes' loss over the update's Docs (:func:`~.nn.cats.cats_loss`:
        window logits pooled per Doc, cross-entropy when exclusive, else binary
        cross-entropy) and its gradient for each classification batch's logits."""
        import torch

        from .nn.cats import cats_loss

        builder = self.model.builder
        gold, known = gold_cats(builder.labels.cats, [eg.reference for eg in examples], self.cfg["exclusive_classes"])
        entries = [(i, b, c, d, j) for i, (batch, _) in enumerate(answered) for b, c, d, j in cat_entries(batch)]
        logits = [xp2torch(l) for _, l in answered]
        loss, grads = cats_loss(
            logits, entries, torch.as_tensor(gold, device=logits[0].device),
            torch.as_tensor(known, device=logits[0].device), self.cfg["exclusive_classes"], self.cfg["cats_pooling"],
        )
        return loss, [torch2xp(g, ops=self.model.ops) for g in grads]

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        """The scorer's keys; with document classes, spaCy's ``cats_*`` keys too. A multi-corpus
        component scores a reference Doc tagged with one of its corpora on that corpus's types
        (``corpus_types``): prediction on an untagged copy asks every type, but another
        corpus's types are not annotated on this Doc, so they are not counted as errors."""
        kwargs.setdefault("cat_labels", list(self.cat_labels))
        if self.model.attrs["task"] is not None and self.schema.corpora:
            kwargs.setdefault("corpus_types", dict(self.schema.corpora))
        return super().score(examples, **kwargs)

    def add_label(self, label: str, description: Optional[str] = None, *, corpus: Optional[str] = None) -> int:
        """Add a concept type to the trained component, asked zero-shot through a query of its
        own: ``description`` is its hard-prompt question and where its learned prompt starts
        (None: built from the label's words). ``corpus``: a corpus that annotates it, so Docs
        tagged with that corpus are asked and supervised on it (e.g. the K examples that then
        teach it). Returns 1 when the type is new, 0 when it was known. Training goes on with the
        optimizer in use (``nlp.resume_training()``): a per-type prompt table (soft, deep) grows by a
        row, as the class table does for :meth:`add_class`, and its optimizer state starts afresh.

        Strategy ``none`` cannot: its types are output columns learned in training."""
        return self._add_type("concept", label, description, corpus)

    def add_relation_type(
        self, label: str, heads: Dict[str, List[str]], description: Optional[str] = None, *,
        corpus: Optional[str] = None,
    ) -> int:
        """Add a relation type to the trained component, as :meth:`add_label` adds a concept
        type (``description``, ``corpus`` and training on after it alike): ``heads`` maps
        each trigger type that heads it to the concept types it reaches (``{"Drug":
        ["Frequency"]}``); each predicted trigger of those types then asks it. Known relation
        types may gain trigger and tail types (returns 0)."""
        self._check_initialized()
        if not heads or not all(isinstance(tails, (list, tuple)) and tails for tails in heads.values()):
            raise ValueError(f"Relation type {label!r} needs heads: trigger type -> a list of the tail types it "
                             f"reaches, e.g. {{'Drug': ['Frequency']}}, not {heads!r}.")
        known = set(self.labels)
        unknown = sorted({t for head, tails in heads.items() for t in (head, *tails)} - known)
        if unknown:
            raise ValueError(f"Relation type {label!r} links concept types this component does not have: "
                             f"{unknown}. Add them first with add_label (its concept types: {sorted(known)}).")
        return self._add_type("relation", label, description, corpus, heads=heads)

    def add_class(self, label: str, description: Optional[str] = None, *, corpus: Optional[str] = None) -> int:
        """Add a document class (``doc.cats``) to a component trained with classes, asked
        zero-shot through a classification query of its own (its description, or a prompt row
        starting there); the class head matches it against the text as it does the others.
        ``description``, ``corpus`` and training on after it as for :meth:`add_label`."""
        return self._add_type("cat", label, description, corpus)

    def _add_type(self, kind: str, label: str, description: Optional[str], corpus: Optional[str],
                  heads: Optional[Dict[str, List[str]]] = None) -> int:
        """What add_label, add_relation_type and add_class share: checks, then the model's add_type."""
        self._check_initialized()
        check_label_names([label], kind)
        if description is not None and not _is_words(description):
            raise ValueError(f"The description of {label!r} is the words that ask for it, not {description!r}.")
        schema = self.schema
        of_kind = {"concept": schema.concept_labels, "relation": schema.relation_labels, "cat": schema.cat_labels}
        known = label in of_kind[kind]
        other = [k for k, names in of_kind.items() if k != kind and label in names]
        if other and not known:  # one description table for every kind: a new name must not collide
            raise ValueError(f"{label!r} is already a {other[0]} label of '{self.name}'; give the new {kind} "
                             "another name.")
        if known and description and description != self.model.attrs["task"].get("query_texts", {}).get(label):
            raise ValueError(
                f"{label!r} is already a {kind} label of '{self.name}', asked with another description; "
                "its prompt was trained on that one."
            )
        self.model.add_type(kind, label, description, corpus, heads=heads)
        self.cfg["query_texts"] = dict(self.model.attrs["task"].get("query_texts") or {})
        return 0 if known else 1

    def _check_initialized(self) -> None:
        if self.model.attrs["task"] is None:
            raise ValueError(
                f"'{self.name}' is not initialized: before training, give concept labels in "
                "[initialize.components.<name>] labels (document classes in cat_labels) and descriptions "
                "in query_texts; add_label, add_relation_type and add_class add types to a trained component."
            )

    def _add_new_labels(self, new_labels: Dict[str, str]) -> None:
        """The ``new_labels`` setting: types the task does not know yet, added from their descriptions."""
        for label, description in new_labels.items():
            if label not in self.labels:
                self.add_label(label, description)

    # --- serialization --------------------------------------------------------------
    def from_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> "SoftPromptIE":
        """TrainablePipe's layout (``cfg``, ``model/``), reading the model as a folder; a
        component saved by version 0.1 (``cfg.json`` beside the weights) loads too."""
        path = util.ensure_path(path)
        if (path / LEGACY_CFG).exists() and not (path / "model").exists():
            return self._from_legacy_folder(path)
        loading = self._loading_settings()
        deserialize = {
            "cfg": lambda p: self.cfg.update(_read_cfg(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self.model.from_disk(p),
        }
        util.from_disk(path, deserialize, exclude)
        return self._settle_loaded_cfg(loading)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "SoftPromptIE":
        loading = self._loading_settings()
        super().from_bytes(bytes_data, exclude=exclude)
        return self._settle_loaded_cfg(loading)

    def _loading_settings(self) -> Dict[str, Any]:
        """This load's settings, before the saved cfg replaces them (and drops what it lacks of BUILT_WITH)."""
        self.cfg.pop(BUILT_WITH, None)
        return {key: self.cfg[key] for key in (*LOAD_SETTINGS, *TRAINED_SETTINGS, "new_labels")}

    def _settle_loaded_cfg(self, loading: Dict[str, Any]) -> "SoftPromptIE":
        """The saved cfg has replaced this load's settings (``loading``): where the load's config
        differs from the config the saved component was built with (an override at
        ``spacy.load``, an edited config.cfg), the load's value wins; elsewhere the saved value,
        changes made in code before saving included. New labels of the load add to the saved ones.
        A trained setting (TRAINED_SETTINGS) the load's config changes stays as saved, with a warning."""
        built = self.cfg.get(BUILT_WITH)
        changed = [key for key in TRAINED_SETTINGS if built and key in built and loading[key] != built[key]]
        if changed:
            warnings.warn(
                f"'{self.name}' was trained with {', '.join(f'{k} = {self.cfg[k]!r}' for k in changed)}; the loading "
                f"config's {', '.join(f'{k} = {loading[k]!r}' for k in changed)} is not applied (retrain for it; a "
                "new type's description: add_label or new_labels).", UserWarning, stacklevel=2)
        # saved before the cfg kept it: the loading config wins where it differs, its label thresholds add (as then)
        saved_config = built or {**configured_settings(self.cfg), "label_thresholds": {}}
        self.cfg.update(settle_settings({key: self.cfg[key] for key in LOAD_SETTINGS}, saved_config,
                                        {key: loading[key] for key in LOAD_SETTINGS}))
        self.cfg["new_labels"] = {**self.cfg.get("new_labels", {}), **loading["new_labels"]}
        self.cfg[BUILT_WITH] = configured_settings(loading)
        check_thresholds(self.cfg["threshold"], self.cfg["relation_threshold"], where=f" ('{self.name}' as saved)")
        if self.model.attrs["task"] is not None:
            self._add_new_labels(self.cfg["new_labels"])
            self._check_label_thresholds()
        return self

    def _check_label_thresholds(self) -> None:
        """Every label threshold (configured or saved) is a probability of a concept type the
        component has: a misspelt type would otherwise be silently asked at ``threshold``."""
        own = self.cfg["label_thresholds"]
        unknown = sorted(set(own) - set(self.labels))
        if unknown:
            raise ValueError(f"label_thresholds of '{self.name}' name {unknown}, which are not its concept types "
                             f"({', '.join(self.labels)}); add a type first (add_label, new_labels).")
        wrong = {label: p for label, p in own.items() if not isinstance(p, (int, float)) or not 0.0 < p <= 1.0}
        if wrong:
            raise ValueError(f"label_thresholds of '{self.name}' are probabilities in (0, 1], not {wrong}.")

    def _warn_misspelt_descriptions(self, schema: TaskSchema) -> None:
        """A ``query_texts`` key that is no label but nearly one is a typo: that label is then asked
        with its default question. (Keys far from every label are kept quietly: a description table
        may cover types added later, by ``add_label`` or ``new_labels``.)"""
        labels = [*self.labels, *schema.relation_labels, *schema.cat_labels]
        for key in sorted(set(self.cfg["query_texts"]) - set(labels)):
            near = difflib.get_close_matches(key, labels, n=1, cutoff=0.8)
            if near and near[0] not in self.cfg["query_texts"]:
                logger.warning("query_texts of '%s' describes %r, which is no label of it; did you mean %r? "
                               "(%r is asked with its default question)", self.name, key, near[0], near[0])

    def _from_legacy_folder(self, path: Path) -> "SoftPromptIE":
        saved = srsly.read_json(path / LEGACY_CFG)
        self.cfg.update({k: v for k, v in saved.items() if k in self.cfg})
        if saved.get("schema") is not None:
            task = {
                "schema": saved["schema"], "query_texts": saved.get("query_texts") or {},
                "backbone": saved["backbone"], "backbone_stored": saved.get("backbone_stored", False),
            }
            self.model.load_folder(path, task)
        return self


def _read_cfg(path: Path) -> Dict[str, Any]:
    """A saved component's settings; a damaged file is an error that names it."""
    from .artifact import DamagedArtifact

    try:
        saved = srsly.read_json(path)
    except ValueError as err:
        raise DamagedArtifact(f"{path} is not valid JSON ({err}): copy the complete pipeline folder again.") from None
    if not isinstance(saved, dict):
        raise DamagedArtifact(f"{path} is not a component's settings (a JSON object): copy the complete pipeline "
                              "folder again.")
    return saved


LEGACY_CFG = "cfg.json"  # version 0.1 kept schema and settings here, beside trainable.safetensors

# settings a loading config may change (spacy.load(..., config=...), an edited config.cfg): how it predicts, and
# the classes' loss weight (for more training)
LOAD_SETTINGS = ("spans_key", "threshold", "relation_threshold", "set_ents", "cats_pooling", "label_thresholds",
                 "cats_loss_weight")
# settings the trained model is made of: a loading config that changes them is warned, not followed
TRAINED_SETTINGS = ("query_texts", "exclusive_classes")
BUILT_WITH = "built_with"  # cfg key: both as the component's config gave them when it was built


def check_thresholds(threshold: Any, relation_threshold: Any, where: str = "") -> None:
    """Both are probabilities in (0, 1] (from a config, or a saved cfg edited by hand)."""
    for option, value in (("threshold", threshold), ("relation_threshold", relation_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
            raise ValueError(f"{option}{where} is a probability in (0, 1], not {value!r}.")


def _is_words(text: Any) -> bool:
    """A description or query text: a string with something in it (a blank one would ask for nothing)."""
    return isinstance(text, str) and bool(text.strip())


def configured_settings(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The LOAD_SETTINGS and TRAINED_SETTINGS of a cfg, copied (its dicts keep changing)."""
    return {key: dict(cfg[key]) if isinstance(cfg[key], dict) else cfg[key]
            for key in LOAD_SETTINGS + TRAINED_SETTINGS}


def settle_settings(saved: Dict[str, Any], saved_config: Dict[str, Any], loading: Dict[str, Any]) -> Dict[str, Any]:
    """A three-way merge of the LOAD_SETTINGS: the loading config's value where it differs from
    the config the saved component was built with, else the saved value. Per type for
    label_thresholds, so a loading config can add, change or (absent from it, present when
    built) remove one type's threshold and keep the others as saved."""
    missing = object()

    def changed(new: Any, built: Any) -> bool:  # a saved cfg keeps 10 decimals (srsly): 0.3 reads back 0.30000000000000004
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (new, built))
        return not math.isclose(new, built, rel_tol=1e-9, abs_tol=1e-10) if numbers else new != built

    settled = {}
    for key in LOAD_SETTINGS:
        if key == "label_thresholds":
            saved_own, built_own, loading_own = (dict(d.get(key) or {}) for d in (saved, saved_config, loading))
            own = {}
            for label in {**saved_own, **built_own, **loading_own}:
                new, built = loading_own.get(label, missing), built_own.get(label, missing)
                value = new if changed(new, built) else saved_own.get(label, missing)
                if value is not missing:
                    own[label] = value
            settled[key] = own
        else:
            built = saved_config.get(key, missing)
            settled[key] = loading[key] if changed(loading[key], built) else saved.get(key, loading[key])
    return settled
