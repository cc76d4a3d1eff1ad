"""The registered thinc architecture ``spacy_softprompt.SoftPromptIE.v1``.

The config block describes the network; the model is built in two steps, as
spaCy's trainable pipes do with their output layer:

1. the architecture returns a :class:`SoftPromptModel` holding the settings;
2. the component gives it the task (schema, hard-prompt texts) and calls
   ``model.initialize()``, which loads the backbone and builds the query
   builder, the collator and the PyTorch network (as a thinc PyTorchShim, on
   the device ``--gpu-id`` selected); or ``model.from_disk()`` rebuilds them
   from a saved folder (:mod:`.artifact`, safetensors only).

Building late is what lets a saved pipeline load on a machine where the
training-time backbone path does not exist.

Input: a :class:`~spacy_softprompt.collate.Batch`. Output: span logits of
shape ``(queries, window tokens, span widths, outputs)``, or class logits
``(queries, outputs)`` for a batch of classification queries.
"""

import copy
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from spacy.util import registry
from thinc.api import ArgsKwargs, Model, PyTorchGradScaler, PyTorchShim, torch2xp, xp2torch
from thinc.types import Floats4d

from . import artifact
from .backbone import Backbone, DeviceMap, get_backbone, onloaded, placement, portable_reference, position_limit
from .collate import Batch, Collator
from .queries import PACKED_TYPES, QueryBuilder, label_words
from .schema import TaskSchema
from .nn.adapters import AdapterSpec
from .strategies import SHARED_PROMPT_TEXT, TYPE_SCORING, Labels, strategy_class


def _one_torch_thread_after_fork() -> None:
    """``nlp.pipe(n_process=N)`` forks workers; torch's OpenMP pool does not survive a
    fork and a forked worker would hang on its first parallel op. One thread per
    worker avoids the pool (N workers already use N cores)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_after_fork)
# thinc 8.2's PyTorchShim uses the older autocast spelling; the warning is not actionable here.
warnings.filterwarnings("ignore", message=r"`torch\.cuda\.amp\.autocast", category=FutureWarning)


@registry.architectures("spacy_softprompt.SoftPromptIE.v1")
def build_softprompt_model(
    backbone: str = "default",
    strategy: str = "soft",
    freeze_backbone: bool = True,
    prompt_length: int = 16,
    prompt_init: str = "vocab",
    reparametrize: bool = False,
    prompt_layer: int = 0,
    max_length: int = 128,
    window_overlap: int = 32,
    max_span_width: int = 12,
    head_width: int = 128,
    dropout: float = 0.1,
    batch_size: int = 32,
    mixed_precision: bool = False,
    trust_remote_code: bool = False,
    backbone_family: Optional[str] = None,
    packed: bool = False,
    cache_frozen_states: bool = True,
    adapter: Optional[AdapterSpec] = None,
    device_map: Optional[DeviceMap] = None,
    max_memory: Optional[Dict[str, Union[int, str]]] = None,
    offload_folder: Optional[str] = None,
    cats_text_pooling: str = "mean",
    head_lr_scale: float = 1.0,
    cats_bag_of_words: bool = False,
    packed_types: str = "all",
    shuffle_types: bool = False,
    type_scoring: str = "dot",
) -> "SoftPromptModel":
    """A transformer with learned prompts and an MRC span head.

    backbone: Hugging Face id, local folder, or "default" (offline all-MiniLM-L6-v2).
    strategy: "none" (no query part), "hard" (questions), "soft" (learned prompt
        vectors), "deep" (learned prompts at every layer), or "hard_soft" / "hard_deep"
        (the question after one learned prompt shared by every type); see strategies.py.
    freeze_backbone: train only prompts and heads; the backbone is left bit-identical.
    prompt_length: learned vectors per query (soft/deep; the shared prompt of hard_soft/hard_deep);
        the paper sweeps 8 to 128,
        and shorter prompts (down to 1) train too.
    prompt_init: "vocab" (embeddings of the label's description in query_texts, else of its
        name's words) or "random".
    reparametrize: pass prompts through a residual MLP while training (P-tuning).
    prompt_layer: 0 puts the query part at the input (one full backbone pass per
        window and query); k > 0 runs layers below k once per window, shared by all
        its queries, and lets the query part in at layer k (late prompts).
    max_length: subwords per backbone sequence (query part + text window), cut to what the
        tokenizer and the position embeddings allow.
    window_overlap: subwords shared by consecutive windows of a long document.
    max_span_width: longest answer span, in spaCy tokens.
    head_width: hidden width of the span head.
    dropout: span head dropout; spaCy's [training] dropout replaces it while training.
    batch_size: sequences per backbone pass.
    mixed_precision: autocast on CUDA (ignored on CPU).
    trust_remote_code: for initialize (training); when loading, it takes effect only
        where SPACY_SOFTPROMPT_TRUST_REMOTE_CODE=1 is set, so a saved pipeline never
        enables it for itself (see artifact.py).
    backbone_family: "bert", "gpt2" or "llama" for a model type missing from the
        layer table (nn/stack.py); null: from the backbone's model_type.
    packed: one query per window asks every concept type (and one per trigger every
        relation type); spans are matched against each type's own prompt states
        (every strategy with a query part; "none" is one pass already).
    cache_frozen_states: with a frozen backbone (no adapter below layer k) and late prompts,
        compute each training window's states below layer k once and reuse them in every epoch.
    adapter: null, or a [model.adapter] block: spacy_softprompt.LoRA.v1 or
        spacy_softprompt.IA3.v1 (peft), combined with any strategy.
    device_map: null (the backbone on one device), or how accelerate spreads a frozen backbone
        too large for one device over GPUs, CPU and disk: "auto" (or "balanced",
        "balanced_low_0", "sequential"), or module name -> device ({"encoder.layer.11": "disk"});
        prompts and heads stay on the main device. See docs/scale.md.
    max_memory: with a device_map strategy, the budget of each device ({"0": "20GiB", "cpu": "60GiB"}).
    offload_folder: where modules placed on "disk" are read from (written at load when needed).
    cats_text_pooling: how a classification query pools a window's text: "mean" (every token
        alike; pipelines saved before this setting) or "attention" (each class weighs the tokens
        by their match with its query; see nn/cats.py).
    cats_bag_of_words: a classification query's logit also sums a learned weight per subword
        of its window for its class (a bag of words beside the backbone's states, as spaCy's
        TextCatEnsemble has; nn/cats.py). Off: pipelines saved before this setting.
    packed_types: which types' parts a packed concept query holds: "all" (every type the component
        knows, whichever a Doc's corpus annotates; pipelines saved before this setting) or "corpus"
        (a Doc tagged with a corpus, ``doc._.corpus``, is asked with its corpus's types alone, so a
        corpus's queries look alike in training and when its types are new; untagged: all).
    shuffle_types: training draws the order of a packed concept query's parts anew for every
        query, so that the head knows a type by the words of its part, not by its place in the query
        (a frozen backbone's cache then keeps the windows' lower states, not the parts').
    type_scoring: how the packed head matches a span with a type's part: "dot" (a dot product;
        pipelines saved before this setting) or "cosine" (a learned scale times their cosine, meant
        to put a type added by description on the trained types' scale; nn/span_head.py).
    head_lr_scale: learning rate of what is new (prompts, heads, the trigger marker: every
        parameter outside the backbone) relative to the optimizer's, which the backbone and its
        adapter keep. An unfrozen backbone wants a small rate (1e-4) that leaves fresh heads slow
        to start; 1.0 (pipelines saved before this setting) trains everything at one rate.
    """
    strategy_class(strategy)(Labels([], []), prompt_length, packed=packed)  # fail early on bad choices
    if not 1 <= prompt_length <= 512:
        raise ValueError(f"prompt_length must be between 1 and 512, not {prompt_length}.")
    if prompt_layer < 0:
        raise ValueError(f"prompt_layer must be 0 (input prompts) or a layer index, not {prompt_layer}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), not {dropout}.")
    for option, value, least in (("batch_size", batch_size, 1), ("max_span_width", max_span_width, 1),
                                 ("head_width", head_width, 1), ("window_overlap", window_overlap, 0)):
        if value < least:
            raise ValueError(f"{option} must be at least {least}, not {value}.")
    if device_map is not None and not (freeze_backbone and adapter is None):
        raise ValueError(
            "device_map places a frozen backbone: set freeze_backbone = true and adapter = null (training "
            "backbone weights spread over devices and offload is not supported)."
        )
    placement(device_map, max_memory, offload_folder)  # fail early on bad placements or no accelerate
    from .nn.cats import TEXT_POOLING  # as the factory checks cats_pooling against nn.cats.POOLING

    if cats_text_pooling not in TEXT_POOLING:
        raise ValueError(f"cats_text_pooling must be one of {TEXT_POOLING}, not {cats_text_pooling!r}.")
    if packed_types not in PACKED_TYPES:
        raise ValueError(f"packed_types must be one of {PACKED_TYPES}, not {packed_types!r}.")
    if type_scoring not in TYPE_SCORING:
        raise ValueError(f"type_scoring must be one of {TYPE_SCORING}, not {type_scoring!r}.")
    if (packed_types != "all" or shuffle_types or type_scoring != "dot") and not packed:
        raise ValueError("packed_types, shuffle_types and type_scoring are about the type parts of a packed "
                         "query: set packed = true.")
    if not head_lr_scale > 0:
        raise ValueError(f"head_lr_scale must be above 0 (1.0: the optimizer's rate), not {head_lr_scale}.")
    settings = {k: v for k, v in locals().items()}
    attrs = {"settings": settings, "task": None, "store_backbone": False, "dropout_rate": dropout}
    return SoftPromptModel("softprompt_ie", forward, init=init, attrs=attrs)


@registry.misc("spacy_softprompt.LoRA.v1")
def lora_adapter(
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Optional[List[str]] = None,
    layers: Optional[List[int]] = None,
) -> AdapterSpec:
    """LoRA (peft) of rank ``r`` on ``target_modules`` (null: the architecture's attention defaults)
    in ``layers`` (null: all; from ``prompt_layer`` up keeps a frozen base's lower states cacheable)."""
    return AdapterSpec("lora", r=r, alpha=alpha, dropout=dropout, target_modules=target_modules, layers=layers)


@registry.misc("spacy_softprompt.IA3.v1")
def ia3_adapter(
    target_modules: Optional[List[str]] = None,
    feedforward_modules: Optional[List[str]] = None,
) -> AdapterSpec:
    """IA3 (peft): learned scaling of keys, values and feed-forward activations (in every layer)."""
    return AdapterSpec("ia3", target_modules=target_modules, feedforward_modules=feedforward_modules)


class SoftPromptModel(Model):
    """A thinc Model that owns its network and saves it as safetensors (:mod:`.artifact`)."""

    @property
    def settings(self) -> Dict[str, Any]:
        return self.attrs["settings"]

    @property
    def builder(self) -> QueryBuilder:
        if "builder" not in self.attrs:
            raise ValueError(
                "The softprompt_ie model is not initialized: call nlp.initialize() (training) "
                "or load a trained pipeline with spacy.load()."
            )
        return self.attrs["builder"]

    @property
    def collator(self) -> Collator:
        self.builder  # the same clear error
        return self.attrs["collator"]

    @property
    def network(self) -> Any:
        self.builder
        return self.shims[0]._model

    @contextmanager
    def shared_lower_states(self) -> Iterator[None]:
        """Inference: keep the lower-layer states of windows and query parts (late prompts)
        across the batches of this block, e.g. one ``predict`` call."""
        self.attrs["cache"] = {}
        try:
            yield
        finally:
            self.attrs.pop("cache", None)

    # --- building ------------------------------------------------------------------
    @property
    def placed(self) -> Optional[Dict[str, Any]]:
        """The backbone's placement over devices and offload (None: one device)."""
        s = self.settings
        return placement(s["device_map"], s["max_memory"], s["offload_folder"])

    @property
    def shares_backbone(self) -> bool:
        """A frozen backbone without adapters is never changed, so components share one copy."""
        return bool(self.settings["freeze_backbone"] and self.settings["adapter"] is None)

    def build(self, task: Dict[str, Any], loaded: Backbone, fresh: bool) -> None:
        """Query builder, collator and network for ``task`` on the ``loaded`` backbone."""
        import torch

        from .nn.network import SoftPromptNetwork

        s = self.settings
        backbone, tokenizer = loaded.model, loaded.tokenizer
        builder = self._query_builder(task, tokenizer, backbone.config)
        strategy = builder.strategy
        init_vectors = None
        if strategy.learned:
            labels = builder.labels.concepts + builder.labels.relations + builder.labels.cats
            init_vectors = self._prompt_init(backbone, builder, labels, s["prompt_init"])
        prompts = strategy.build_prompts(
            dim=backbone.config.hidden_size, n_layers=backbone.config.num_hidden_layers,
            prompt_layer=s["prompt_layer"], init=init_vectors, reparametrize=s["reparametrize"],
        )
        network = SoftPromptNetwork(
            # a task of document classes only has no span outputs; one unused column keeps torch quiet
            backbone, prompts, n_outputs=max(1, strategy.n_outputs), max_span_width=s["max_span_width"],
            head_width=s["head_width"], dropout=s["dropout"], freeze_backbone=s["freeze_backbone"],
            prompt_layer=s["prompt_layer"], backbone_family=s["backbone_family"],
            match_type_parts=strategy.matches_type_parts, n_cats=len(builder.labels.cats),
            typed_cats=not strategy.has_query_part, cats_text_pooling=s["cats_text_pooling"],
            cats_bag_of_words=s["cats_bag_of_words"], cosine_types=s["type_scoring"] == "cosine",
        )
        collator = Collator(builder, s["max_span_width"])
        if fresh and strategy.deep:
            ids = torch.from_numpy(collator.prompt_only_ids())
            network.calibrate_deep_prompts(ids, builder.special.prompt_start, init_vectors)
        if s["adapter"] is not None:
            network.add_adapter(s["adapter"])
        network.shared_states = loaded.states
        network.keep_query_parts = not s["shuffle_types"]
        use_amp = bool(s["mixed_precision"]) and torch.cuda.is_available()
        shim = PyTorchShim(network, mixed_precision=use_amp, grad_scaler=PyTorchGradScaler(enabled=use_amp))
        self.shims[:] = [shim]
        # holding the loaded backbone keeps it shared while this model lives (backbone.get_backbone)
        self.attrs.update(task=task, builder=builder, collator=collator, tokenizer=tokenizer, backbone=loaded)
        self.attrs["frozen_states"] = {} if self.caches_frozen_states else None

    def _query_builder(self, task: Dict[str, Any], tokenizer: Any, config: Any) -> QueryBuilder:
        s = self.settings
        return QueryBuilder(
            tokenizer, TaskSchema.from_dict(task["schema"]), strategy=s["strategy"], prompt_length=s["prompt_length"],
            max_length=min(s["max_length"], position_limit(config)), window_overlap=s["window_overlap"],
            query_texts=task.get("query_texts") or {}, prompt_layer=s["prompt_layer"],
            packed=s["packed"], corpus_parts=s["packed_types"] == "corpus", shuffle_types=s["shuffle_types"],
        )

    def _prompt_init(self, backbone: Any, builder: QueryBuilder, labels: List[str], mode: str) -> Any:
        """Initial prompt vectors of ``labels``: the embeddings of each label's description
        (its ``query_texts`` entry, the same words a hard prompt asks with) or else of its name's
        words, so that a type's prompt starts from what the type means; a shared prompt (one row)
        starts from the words of ``SHARED_PROMPT_TEXT``."""
        from .nn.prompts import prompt_init_from_words

        texts = builder.query_texts
        if builder.strategy.shared_prompt:  # one prompt for every type: it starts as an instruction
            words = [builder.text_ids(SHARED_PROMPT_TEXT)]
        else:
            words = [builder.text_ids(texts.get(label) or label_words(label)) for label in labels]
        with onloaded(backbone.get_input_embeddings()):
            return prompt_init_from_words(backbone.get_input_embeddings(), words, self.settings["prompt_length"], mode)

    def add_type(
        self, kind: str, label: str, description: Optional[str], corpus: Optional[str],
        heads: Optional[Dict[str, List[str]]] = None,
    ) -> None:
        """A new concept type, relation type or document class on a trained model, asked
        zero-shot through a query part of its own (``kind``: "concept", "relation", "cat").
        hard (and hard_soft, hard_deep: the shared prompt asks it too): its description is the
        question; soft and deep: a new prompt row that starts at the description's embeddings
        (how every trained row started; ``prompt_init = "random"`` would give the new type
        nothing to go on; with ``reparametrize`` the trained MLP then acts on it as on every
        row), deep rows calibrated from it as at initialize. ``heads`` (relations):
        trigger type -> the tail types this relation reaches from it. Rows after the new one
        move down one; the builder, the collator and every cache keyed by rows are rebuilt or
        dropped."""
        import torch

        task = self.attrs["task"]
        if not self.builder.strategy.type_is_query:
            s = self.settings
            raise ValueError(
                f"Cannot add {label!r} without retraining: strategy {s['strategy']!r} answers each "
                "type in an output column of its own, learned in training. A type can be added from its "
                "description with strategy 'hard', 'soft', 'deep', 'hard_soft' or 'hard_deep' (packed = true "
                "scores spans against the type's own part with the type-matching head; packed = false asks it "
                "one query of its own); "
                "otherwise list it in [initialize.components.<name>] and retrain."
            )
        schema = TaskSchema.from_dict(copy.deepcopy(task["schema"]))  # the task in use stays as it is until the end
        if kind == "concept":
            known = label in schema.concept_labels
            if not known:
                schema.concept_labels.append(label)
        elif kind == "relation":
            known = label in schema.relation_labels
            for head, tails in (heads or {}).items():
                reached = schema.triggers.setdefault(head, {}).setdefault(label, [])
                reached.extend(t for t in tails if t not in reached)
        elif kind == "cat":
            if self.network.cat_head is None:
                raise ValueError(
                    f"Cannot add document class {label!r} zero-shot: this model was trained without classes, so "
                    "it has no class head. Train it with at least one class (doc.cats) first."
                )
            known = label in schema.cat_labels
            if not known:
                schema.cat_labels.append(label)
        else:
            raise ValueError(f"kind must be 'concept', 'relation' or 'cat', not {kind!r}.")
        if corpus is not None:
            schema.corpora[corpus] = sorted(set(schema.corpora.get(corpus, [])) | {label})
        texts = dict(task.get("query_texts") or {})
        if not known and description:
            texts[label] = description
        new_task = dict(task, schema=schema.to_dict(), query_texts=texts)
        builder = self._query_builder(new_task, self.attrs["tokenizer"], self.network.backbone.config)
        collator = Collator(builder, self.settings["max_span_width"])
        network = self.network
        if builder.strategy.learned and not builder.strategy.shared_prompt and not known:
            row = builder.labels.row(kind, label)
            init = self._prompt_init(network.backbone, builder, [label], "vocab")
            network.prompts.insert_row(row, init[0])
            if builder.strategy.deep:
                ids = collator.prompt_only_ids()[row : row + 1]
                network.calibrate_deep_prompts(
                    torch.from_numpy(ids).to(network.device), builder.special.prompt_start,
                    init.to(network.device), rows=[row],
                )
        if kind == "cat" and not known:
            network.cat_head.add_class()  # its bag-of-words row, last as the class is in the task's list
        network.forget_query_parts()
        self.attrs.update(task=new_task, builder=builder, collator=collator)
        if self.attrs.get("frozen_states") is not None:
            self.attrs["frozen_states"] = {}  # its query parts are keyed by rows, which moved

    @property
    def caches_frozen_states(self) -> bool:
        s = self.settings
        adapter = s["adapter"]
        lower_fixed = adapter is None or not adapter.changes_layers_below(s["prompt_layer"])
        return bool(s["freeze_backbone"] and lower_fixed and s["prompt_layer"] > 0 and s["cache_frozen_states"])

    def finish_update(self, optimizer: Any) -> None:
        """An optimizer step. thinc writes the new weights through numpy views, which torch's
        version counters do not see, so the network is told to drop what it derived from them."""
        self._forget_resized(optimizer)
        scale = self.settings.get("head_lr_scale", 1.0)
        if scale == 1.0 or "builder" not in self.attrs:
            super().finish_update(optimizer)
        else:
            self._scaled_update(optimizer, scale)
        if "builder" in self.attrs:
            self.network.forget_query_parts()

    def _forget_resized(self, optimizer: Any) -> None:
        """The optimizer's state of a parameter that has since changed size (add_type grew a
        prompt or class table) no longer fits it: dropped, so that parameter starts afresh, as a
        new one would, and the optimizer in use (``nlp.resume_training()``) trains on."""
        shim = self.shims[0]
        stores = [s for s in (getattr(optimizer, n, None) for n in ("mom1", "mom2", "averages")) if s]
        for name, param in shim._model.named_parameters():
            key = (shim.id, name)
            if any(key in store and store[key].size != param.numel() for store in stores):
                for store in stores:
                    store.pop(key, None)
                optimizer.nr_update.pop(key, None)

    def _scaled_update(self, optimizer: Any, head_scale: float) -> None:
        """thinc's PyTorchShim.finish_update, with ``lr_scale`` = ``head_scale`` for every
        parameter outside the backbone (the backbone and its adapter at the optimizer's rate)."""
        shim = self.shims[0]
        skip = shim._grad_scaler.found_inf  # an overflowed fp16 gradient: no step, as thinc does
        for name, param in shim._model.named_parameters():
            if param.grad is None:
                continue
            if not skip:
                scale = 1.0 if name.startswith("backbone.") else head_scale
                weights, _ = optimizer((shim.id, name), torch2xp(param.data), torch2xp(param.grad), lr_scale=scale)
                param.data = xp2torch(weights, requires_grad=True, device=param.device)
            param.grad.zero_()
        shim._grad_scaler.update()

    def export_adapter(self, path: Path) -> None:
        """Write the trained adapter in ``peft``'s own format, for use outside spaCy."""
        from .nn.adapters import export_peft

        if self.settings["adapter"] is None:
            raise ValueError("This model has no adapter ([model.adapter] is null): nothing to export.")
        if not self.settings["freeze_backbone"]:
            raise ValueError("The backbone was trained with the adapter (freeze_backbone = false): the adapter "
                             "alone does not reproduce the model on the original backbone. Use the saved "
                             "pipeline, whose stored backbone holds the trained base weights.")
        network = self.network
        export_peft(network.backbone, self.settings["adapter"], network.stack.family_name, Path(path))

    # --- serialization ---------------------------------------------------------------
    def to_disk(self, path: Any) -> None:
        # a backbone stored once stays stored: it may have been fine-tuned, which the saved name and hash do
        # not describe (a fine-tuned pipeline loaded with freeze_backbone = true, to train its prompts on)
        stored = bool((self.attrs["task"] or {}).get("backbone_stored"))
        embed = bool(self.attrs["store_backbone"] or not self.settings["freeze_backbone"] or stored)
        network = self.network if self.attrs["task"] is not None else None
        artifact.save_model(Path(path), self.attrs["task"], network, self.attrs.get("tokenizer"), embed)

    def from_disk(self, path: Any) -> "SoftPromptModel":
        path = Path(path)
        task = artifact.read_task(path)
        if task is not None:
            self.load_folder(path, task)
        return self

    def load_folder(self, path: Path, task: Dict[str, Any]) -> None:
        """Rebuild from a saved folder holding ``trainable.safetensors`` (and ``backbone/``)."""
        saved, now = task.get("trained_with"), trained_with(self.settings)
        changed = {key: (saved[key], now[key]) for key in (saved or {}) if key in now and saved[key] != now[key]}
        if changed:  # the tensors may fit, but they compute something else (pipelines saved before: not checked)
            raise ValueError(
                f"{path} was trained with " + ", ".join(f"{k} = {old!r}" for k, (old, _) in changed.items())
                + "; the loading config says " + ", ".join(f"{k} = {new!r}" for k, (_, new) in changed.items())
                + ". The model computes with the settings it was trained with: restore them in the config, or retrain.")
        trust = artifact.remote_code_allowed_at_load(self.settings["trust_remote_code"])
        loaded, task = artifact.load_backbone_for(path, task, trust, self.shares_backbone, self.placed,
                                                  configured=self.settings["backbone"])
        self.build(task, loaded, fresh=False)
        artifact.load_state(self.network, path)

    def to_bytes(self) -> bytes:
        return artifact.folder_to_bytes(self.to_disk)

    def from_bytes(self, bytes_data: bytes) -> "SoftPromptModel":
        artifact.bytes_to_folder(bytes_data, self.from_disk)
        return self


def init(model: SoftPromptModel, X: Any = None, Y: Any = None) -> None:
    """Load the backbone named in the settings and build the network for the task
    the component set in ``model.attrs["task"]`` (its schema and query texts)."""
    task = model.attrs["task"]
    if task is None:
        raise ValueError("The softprompt_ie component sets the task before initializing its model.")
    s = model.settings
    if model.placed is not None and model.attrs["store_backbone"]:
        raise ValueError("store_backbone = true with a device_map is not supported: a backbone too large for one "
                         "device is named in the saved pipeline, not copied into it.")
    loaded = get_backbone(
        s["backbone"], trust_remote_code=s["trust_remote_code"], share=model.shares_backbone, placed=model.placed
    )
    task = dict(task, backbone={"name": portable_reference(s["backbone"]), "sha256": loaded.sha256},
                trained_with=trained_with(s))
    model.build(task, loaded, fresh=True)


#: settings that decide what the trained tensors compute, without always changing their shapes
TRAINED_WITH = ("strategy", "prompt_length", "reparametrize", "prompt_layer", "max_span_width", "head_width", "packed",
                "adapter", "cats_text_pooling", "cats_bag_of_words", "packed_types", "type_scoring", "backbone_family")


def trained_with(settings: Dict[str, Any]) -> Dict[str, Any]:
    """The TRAINED_WITH settings as JSON values (an adapter as its fields), saved in the task."""
    import dataclasses

    values = {key: settings[key] for key in TRAINED_WITH}
    if values["adapter"] is not None:
        values["adapter"] = dataclasses.asdict(values["adapter"])
    return json.loads(json.dumps(values))


def forward(model: SoftPromptModel, batch: Batch, is_train: bool) -> Tuple[Floats4d, Callable]:
    shim = model.shims[0] if model.shims else None
    device = model.network.device  # also a clear error when not initialized

    def tensor(array):
        return xp2torch(model.ops.asarray(array), device=device)

    shared = None
    if batch.shared is not None:
        shared = {
            name: value if name.endswith("_keys") else tensor(value)
            for name, value in vars(batch.shared).items()
        }
    inputs = ArgsKwargs(
        args=(),
        kwargs=dict(
            input_ids=tensor(batch.input_ids),
            attention_mask=tensor(batch.attention_mask),
            prompt_ids=tensor(batch.prompt_ids),
            marker=tensor(batch.marker),
            token_starts=tensor(batch.token_starts),
            token_ends=tensor(batch.token_ends),
            prompt_start=batch.prompt_start,
            shared=shared,
            cache=model.attrs.get("frozen_states") if is_train else model.attrs.get("cache"),
            type_pool=None if batch.type_pool is None else tensor(batch.type_pool),
            levitated=None if batch.levitated is None else tensor(batch.levitated),
            position_ids=None if batch.position_ids is None else tensor(batch.position_ids),
            cat_pool=None if batch.cat_pool is None else tensor(batch.cat_pool),
            cat_words=None if batch.cat_words is None else tensor(batch.cat_words),
            cat_classes=None if batch.cat_classes is None else tensor(batch.cat_classes),
        ),
    )
    if not is_train:
        return torch2xp(shim.predict(inputs), ops=model.ops), lambda d: batch
    model.network.set_dropout(model.attrs.get("dropout_rate", model.settings["dropout"]))
    output, torch_backprop = shim.begin_update(inputs)

    def backprop(d_logits: Floats4d) -> Batch:
        grad = xp2torch(d_logits, device=device)
        torch_backprop(ArgsKwargs(args=(output,), kwargs={"grad_tensors": (grad,)}))
        return batch

    return torch2xp(output, ops=model.ops), backprop
