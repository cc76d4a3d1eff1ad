"""The network: backbone + learned prompts + trigger marker + span head.

Two ways to run the queries (``prompt_layer``):

- ``0``, *input prompts* (the paper's MRC): the query part is at the input and
  every (window, query) pays one full backbone pass, so cost grows linearly
  with the number of concept and relation types.
- ``k > 0``, *late prompts*: layers ``0..k-1`` read each text window once,
  without any query; each query part is read by the same lower layers on its
  own (a few tokens, cached at inference); the query part and the trigger
  marker join the window's states at layer ``k``, and only layers ``k..L-1``
  run once per query. With a frozen backbone the shared lower pass runs
  without autograd, which is also what cuts training memory.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Optional

import torch
from torch import nn

from ..strategies import first_deep_layer
from .adapters import AdapterSpec, base_state_dict, inject, is_adapter_key
from .cats import ClassHead
from .prompts import PromptTable, write_slots
from .span_head import SpanHead, TypeMatchingSpanHead
from .stack import LayerStack, is_dispatched


class SoftPromptNetwork(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        prompts: Optional[PromptTable],
        *,
        n_outputs: int,
        max_span_width: int,
        head_width: int,
        dropout: float,
        freeze_backbone: bool,
        prompt_layer: int = 0,
        backbone_family: Optional[str] = None,
        match_type_parts: bool = False,
        n_cats: int = 0,
        typed_cats: bool = True,
        cats_text_pooling: str = "mean",
        cats_bag_of_words: bool = False,
        cosine_types: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.freeze_backbone = freeze_backbone
        self.stack = LayerStack(backbone, backbone_family)
        if not 0 <= prompt_layer < len(self.stack):
            raise ValueError(
                f"prompt_layer={prompt_layer} is outside this backbone's {len(self.stack)} layers: use 0 "
                f"(prompts at the input) up to {len(self.stack) - 1} (prompts before the last layer)."
            )
        self.prompt_layer = prompt_layer
        self.adapter: Optional[AdapterSpec] = None
        # Frozen backbone shared with other components: lower-layer states of recent windows
        # (backbone.SharedStates, a plain object, not a module); None when not shared.
        self.shared_states = None
        # Training: whether frozen query parts' lower states are kept with the windows' (false when
        # shuffle_types orders each query's parts anew, so that a kept part is almost never met again).
        self.keep_query_parts = True
        # Inference: lower-layer states of query parts, which depend only on the weights; kept
        # across calls while no parameter has changed (see _query_part_cache).
        self._query_parts: Dict[tuple, torch.Tensor] = {}
        self._query_parts_stamp: Optional[tuple] = None
        self.first_deep_layer = first_deep_layer(prompt_layer)
        self.prompts = prompts
        dim = backbone.config.hidden_size
        self.trigger_marker = nn.Parameter(torch.zeros(dim))
        self.head = (
            TypeMatchingSpanHead(dim, head_width, max_span_width, dropout, cosine=cosine_types)
            if match_type_parts
            else SpanHead(dim, head_width, max_span_width, n_outputs, dropout)
        )
        # Document classes (classification queries); none: the state dict is what it was before.
        self.cat_head = (
            ClassHead(dim, head_width, n_cats, typed_cats, dropout, cats_text_pooling,
                      vocab_size=backbone.get_input_embeddings().num_embeddings if cats_bag_of_words else 0)
            if n_cats else None
        )
        if freeze_backbone:
            for param in self.backbone.parameters():
                param.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        """Where prompts, heads and batches live (a dispatched backbone's layers may be elsewhere)."""
        return self.trigger_marker.device

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "SoftPromptNetwork":
        """Moving the network (thinc's shim does, to its device) moves prompts and heads but
        leaves a dispatched backbone where accelerate placed it."""
        if not (recurse and is_dispatched(self.backbone)):
            return super()._apply(fn, recurse)
        for child in self.children():
            if child is not self.backbone:
                child._apply(fn)
        return super()._apply(fn, recurse=False)

    @property
    def lower_layers_train(self) -> bool:
        """Whether a backbone tensor below the prompt layer learns (unfrozen, or an adapter there):
        if not, the states there are fixed and may be cached."""
        if not self.freeze_backbone:
            return True
        return self.adapter is not None and self.adapter.changes_layers_below(self.prompt_layer)

    @property
    def n_layers(self) -> int:
        return len(self.stack)

    def trainable_state(self) -> Dict[str, torch.Tensor]:
        """What a frozen-backbone artifact stores: everything but the backbone's own weights
        (adapter tensors inside the backbone included)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.") or is_adapter_key(k)}

    def add_adapter(self, spec: AdapterSpec) -> None:
        """``peft`` adapter layers in the backbone (the base stays frozen if it was)."""
        outside = [layer for layer in spec.layers or [] if not 0 <= layer < self.n_layers]
        if outside:
            raise ValueError(f"adapter layers {outside} are outside this backbone's {self.n_layers} layers (0 to "
                             f"{self.n_layers - 1}).")
        inject(self.backbone, spec, self.stack.family_name, train_base=not self.freeze_backbone)
        self.adapter = spec

    def backbone_state(self) -> Dict[str, torch.Tensor]:
        """The backbone's weights under its own names, for ``save_pretrained``."""
        return base_state_dict(self.backbone)

    def set_dropout(self, rate: float) -> None:
        """The span head's dropout for the next passes (spaCy's ``[training] dropout``)."""
        self.head.dropout.p = float(rate)
        if self.cat_head is not None:
            self.cat_head.dropout.p = float(rate)

    @torch.no_grad()
    def calibrate_deep_prompts(
        self, input_ids: torch.Tensor, prompt_start: int, prompt_init: torch.Tensor, rows: Optional[List[int]] = None
    ) -> None:
        """Start each layer's prompts at the hidden states that ``prompt_init``, used as input
        prompts, produces there, so deep prompts begin where soft prompts would and only add
        freedom. ``input_ids``: one ``[CLS] <prompt slots>`` row per prompt; ``rows``: the prompt
        rows they are (None: all; a type added after training calibrates its own row only)."""
        if self.prompts is None or self.prompts.deep is None:
            return
        embeds = write_slots(self.stack.token_embeddings(input_ids), prompt_init, prompt_start)
        seen: Dict[int, torch.Tensor] = {}

        def record(i: int, hidden: torch.Tensor) -> torch.Tensor:
            seen[i] = hidden
            return hidden

        self.stack.run(self.stack.embed(embeds), torch.ones_like(input_ids), before_layer=record)
        end = prompt_start + prompt_init.shape[1]
        target = slice(None) if rows is None else torch.as_tensor(rows, device=self.prompts.deep.device)
        for index in range(self.prompts.deep.shape[1]):
            self.prompts.deep[target, index] = seen[self.first_deep_layer + index][:, prompt_start:end].to(self.prompts.deep)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_ids: torch.Tensor,
        marker: torch.Tensor,
        token_starts: torch.Tensor,
        token_ends: torch.Tensor,
        prompt_start: int,
        shared: Optional[Dict[str, torch.Tensor]] = None,
        cache: Optional[dict] = None,
        type_pool: Optional[torch.Tensor] = None,
        levitated: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        cat_pool: Optional[torch.Tensor] = None,
        cat_words: Optional[torch.Tensor] = None,
        cat_classes: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Span logits ``(queries, window tokens, widths, outputs)``; for classification
        queries (``cat_pool`` given, (B, K, 2, S)) class logits ``(queries, outputs)`` instead:
        the same pass, another head (``cat_words``, ``cat_classes``: its bag of words' input).

        ``shared`` (late prompts only) holds the distinct windows and query parts
        of the batch and the gather map that assembles layer ``k``'s input; ``cache``
        (inference only) keeps their lower-layer states across batches.
        ``levitated`` marks trigger marker tokens: each reads everything but the other
        markers, and nothing reads it; ``position_ids`` gives them their triggers' positions.
        """
        if levitated is not None:
            attention_mask = _levitated_mask(attention_mask, levitated)
        if self.prompt_layer == 0:
            embeds = self._embed(input_ids, prompt_ids, prompt_start)
            embeds = embeds + marker[..., None].to(embeds.dtype) * self.trigger_marker.to(embeds.dtype)
            hidden = self.stack.embed(embeds, position_ids)
            hidden = self._upper(hidden, 0, attention_mask, prompt_ids, prompt_start, position_ids)
        else:
            assert shared is not None, "late prompts need the batch's shared windows"
            hidden = self._late_hidden(attention_mask, prompt_ids, marker, prompt_start, shared, cache, position_ids)
        if cat_pool is not None:
            return self.cat_head(cat_pool.to(hidden.dtype), hidden, cat_words, cat_classes).float()
        return self.head(hidden, token_starts, token_ends, type_pool).float()

    # --- pieces -------------------------------------------------------------------
    def _embed(self, input_ids: torch.Tensor, prompt_ids: Optional[torch.Tensor], prompt_start: int) -> torch.Tensor:
        """Token embeddings, with the input prompt vectors written over the prompt slots."""
        embeds = self.stack.token_embeddings(input_ids)
        if self.prompts is not None and self.prompts.vectors is not None and prompt_ids is not None:
            embeds = write_slots(embeds, self.prompts.input_prompts(prompt_ids), prompt_start)
        return embeds

    def _upper(
        self, hidden: torch.Tensor, lo: int, attention_mask: torch.Tensor, prompt_ids: torch.Tensor, prompt_start: int,
        position_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Layers ``lo..L-1``, writing deep prompts (if any) before each layer from the first prompt layer."""
        def write_deep_prompts(i: int, h: torch.Tensor) -> torch.Tensor:
            if i < self.first_deep_layer:
                return h
            return write_slots(h, self.prompts.layer_prompts(prompt_ids, i - self.first_deep_layer), prompt_start)

        deep = self.prompts is not None and self.prompts.deep is not None
        before = write_deep_prompts if deep else None
        return self.stack.run(hidden, attention_mask, lo, before_layer=before, position_ids=position_ids)

    def _late_hidden(
        self,
        attention_mask: torch.Tensor,
        prompt_ids: torch.Tensor,
        marker: torch.Tensor,
        prompt_start: int,
        shared: Dict[str, torch.Tensor],
        cache: Optional[dict],
        position_ids: Optional[torch.Tensor],
    ) -> torch.Tensor:
        window_cache = cache
        if self.shared_states is not None and not torch.is_grad_enabled():
            window_cache = self.shared_states.at_layer(self.prompt_layer)  # other tasks' windows too
        windows = self._lower_states(shared["window_ids"], shared["window_mask"], shared["window_keys"],
                                     None, prompt_start, window_cache)
        input_prompts = self.prompts is not None and self.prompts.vectors is not None
        with_prompts = shared["query_prompts"] if input_prompts else None
        # training keeps a frozen query part's states unless shuffled parts make nearly every part new
        query_cache = (cache if self.keep_query_parts else None) if torch.is_grad_enabled() else self._query_part_cache()
        queries = self._lower_states(shared["query_ids"], shared["query_mask"], shared["query_keys"],
                                     with_prompts, prompt_start, query_cache)
        dim = windows.shape[-1]
        source = torch.cat([windows.new_zeros(1, dim), windows.reshape(-1, dim), queries.reshape(-1, dim).to(windows.dtype)])
        hidden = source[shared["gather"]]  # (B, S, D): [CLS] query part, window text, [SEP]
        hidden = hidden + marker[..., None].to(hidden.dtype) * self.trigger_marker.to(hidden.dtype)
        return self._upper(hidden, self.prompt_layer, attention_mask, prompt_ids, prompt_start, position_ids)

    def _query_part_cache(self) -> Dict[tuple, torch.Tensor]:
        """The query parts' lower-layer states at inference, kept across ``predict`` calls: a
        query part is the same few tokens in every batch, so reading it again each call cost as
        much as a second task's whole upper pass. Its states change only with the weights: the
        cache is dropped after an optimizer step (:meth:`forget_query_parts`) and when a
        parameter is replaced or written in place by torch (its ``_version`` counts those)."""
        stamp = tuple((id(p), p._version) for p in self.parameters())
        if stamp != self._query_parts_stamp:
            self.forget_query_parts()
            self._query_parts_stamp = stamp
        return self._query_parts

    def forget_query_parts(self) -> None:
        """Drop the cached query-part states (the weights they came from have changed)."""
        self._query_parts, self._query_parts_stamp = {}, None

    def _lower_states(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        keys: List,
        prompt_ids: Optional[torch.Tensor],
        prompt_start: int,
        cache: Optional[dict],
    ) -> torch.Tensor:
        """Layer ``k``'s input for each row of ``ids``; rows whose key is cached are not recomputed.

        States that learn (prompts, an unfrozen backbone, while training) are never cached.
        Frozen states are computed with the backbone's dropout off, so that a state read
        from the cache is exactly the one that would be computed now."""
        dim = self.backbone.config.hidden_size
        if ids.shape[0] == 0:
            return self.trigger_marker.new_zeros(0, ids.shape[1], dim)
        learns = torch.is_grad_enabled() and (prompt_ids is not None or self.lower_layers_train)
        if learns:
            cache = None
        todo = list(range(len(keys))) if cache is None else [i for i, key in enumerate(keys) if key not in cache]
        computed = None
        if todo:
            rows = torch.as_tensor(todo, device=ids.device)
            sub_prompts = prompt_ids[rows] if prompt_ids is not None else None
            with torch.set_grad_enabled(learns), _dropout_off(self.backbone, not learns):
                embeds = self.stack.embed(self._embed(ids[rows], sub_prompts, prompt_start))
                computed = self.stack.run(embeds, mask[rows], 0, self.prompt_layer)
        if cache is None:
            return computed
        for j, i in enumerate(todo):  # a copy: a view would keep its whole padded batch alive
            cache[keys[i]] = computed[j, : int(mask[i].sum())].clone()
        out = self.trigger_marker.new_zeros(ids.shape[0], ids.shape[1], dim)
        for i, key in enumerate(keys):
            states = cache[key]
            out[i, : len(states)] = states.to(out.dtype)
        return out


def _levitated_mask(attention_mask: torch.Tensor, levitated: torch.Tensor) -> torch.Tensor:
    """(B, S, S) who reads whom: every token reads the real tokens that are not markers,
    and each marker also reads itself."""
    n = attention_mask.shape[1]
    reads = attention_mask.bool() & ~levitated.bool()  # (B, S) keys everyone reads
    itself = torch.eye(n, dtype=torch.bool, device=attention_mask.device)[None] & levitated.bool()[:, None, :]
    return (reads[:, None, :] | itself).to(attention_mask.dtype)


@contextmanager
def _dropout_off(module: nn.Module, off: bool) -> Iterator[None]:
    """Eval mode for ``module`` inside the block (when ``off``), its own mode after."""
    was_training = module.training
    if off and was_training:
        module.eval()
    try:
        yield
    finally:
        if off and was_training:
            module.train()
