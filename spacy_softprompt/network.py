"""The PyTorch network: backbone + learned prompts + span head.

- :class:`PromptTable` holds one block of ``prompt_length`` vectors per query
  (concept types first, then relation types). ``deep`` adds one block per
  layer, written over the prompt positions at the input of every layer
  (P-tuning v2 / prefix-style deep prompts, done with forward pre-hooks so
  any encoder or decoder whose layers take ``hidden_states`` first works).
  ``reparametrize`` passes the table through a residual MLP (P-tuning).
- :class:`SpanHead` scores every (start token, width) candidate in a window,
  for one binary output (MRC) or one output per type (``none``).
- :class:`SoftPromptNetwork` ties them to the backbone and, when frozen,
  removes the backbone's parameters from autograd entirely.

Two ways to run the queries (``prompt_layer``):

- ``0``, *input prompts* (the paper's MRC): the query part is prepended at the
  input and every (window, query) pays one full backbone pass, so cost grows
  linearly with the number of concept and relation types.
- ``k > 0``, *late prompts*: layers ``0..k-1`` read each text window once,
  without any query; each query part is encoded by the same lower layers on
  its own (a few tokens, cached at inference); the query part and the trigger
  marker join the window's hidden states at layer ``k``, and only layers
  ``k..L-1`` run once per query. With a frozen backbone the shared lower pass
  runs without autograd, which is also what cuts training memory.

Both are done by running a contiguous slice of the backbone's own layer stack
through the backbone's own ``forward`` (so attention masks, position handling
and architectures stay Hugging Face's business), with forward hooks to read
the output of layer ``k-1`` and to write the input of layer ``k``.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn


class PromptTable(nn.Module):
    def __init__(
        self,
        n_prompts: int,
        length: int,
        dim: int,
        n_deep_layers: int,
        init: torch.Tensor,
        reparametrize: bool,
        input_prompts: bool = True,
    ):
        super().__init__()
        # (P, N, D); deep late prompts have none: their first block is written at layer k
        self.vectors = nn.Parameter(init.clone()) if input_prompts else None
        self.deep = (
            nn.Parameter(init[:, None].repeat(1, n_deep_layers, 1, 1).clone()) if n_deep_layers else None
        )  # (P, L, N, D)
        self.reparam = (
            nn.Sequential(nn.Linear(dim, dim // 2), nn.Tanh(), nn.Linear(dim // 2, dim))
            if reparametrize
            else None
        )
        if self.reparam is not None:
            nn.init.zeros_(self.reparam[2].weight)
            nn.init.zeros_(self.reparam[2].bias)

    def _shape(self, table: torch.Tensor) -> torch.Tensor:
        return table + self.reparam(table) if self.reparam is not None else table

    def input_prompts(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        return self._shape(self.vectors[prompt_ids])

    def layer_prompts(self, prompt_ids: torch.Tensor, layer: int) -> torch.Tensor:
        assert self.deep is not None
        return self._shape(self.deep[prompt_ids, layer])


class SpanHead(nn.Module):
    """score(i, w) = out(gelu(S h_first(i) + E h_last(i+w) + width(w)))."""

    def __init__(self, dim: int, width: int, max_span_width: int, n_outputs: int, dropout: float):
        super().__init__()
        self.start = nn.Linear(dim, width)
        self.end = nn.Linear(dim, width)
        self.width = nn.Embedding(max_span_width, width)
        self.out = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Linear(width, n_outputs))
        # Answers are rare among candidates: start every span at p = 0.01, so an
        # untrained model predicts nothing instead of half of all spans.
        nn.init.constant_(self.out[2].bias, math.log(0.01 / 0.99))
        self.max_span_width = max_span_width

    def forward(self, hidden: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        dim = hidden.shape[-1]
        h_start = hidden.gather(1, starts[..., None].expand(-1, -1, dim))
        h_end = hidden.gather(1, ends[..., None].expand(-1, -1, dim))
        a, e = self.start(h_start), self.end(h_end)  # (B, T, H)
        n_tok = a.shape[1]
        idx = torch.arange(n_tok, device=a.device)[:, None] + torch.arange(self.max_span_width, device=a.device)
        e_shifted = e[:, idx.clamp(max=n_tok - 1)]  # (B, T, W, H)
        return self.out(a[:, :, None] + e_shifted + self.width.weight)  # (B, T, W, K)


def find_layer_slot(backbone: nn.Module) -> Tuple[nn.Module, str]:
    """Where the backbone keeps its stack of transformer layers: (owner, attribute name),
    e.g. (BERT ``encoder``, ``"layer"``) or (GPT-2 model, ``"h"``)."""
    n_layers = backbone.config.num_hidden_layers
    for owner in backbone.modules():
        for name, child in owner.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == n_layers:
                return owner, name
    raise ValueError(f"Cannot find the {n_layers} transformer layers of {type(backbone).__name__}.")


def find_layers(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's stack of transformer layers (BERT ``encoder.layer``, GPT-2 ``h``, ...)."""
    owner, name = find_layer_slot(backbone)
    return getattr(owner, name)


def _first_tensor(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


class SoftPromptNetwork(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        *,
        strategy: str,
        n_prompts: int,
        prompt_length: int,
        prompt_init: Optional[torch.Tensor],
        reparametrize: bool,
        n_outputs: int,
        max_span_width: int,
        head_width: int,
        dropout: float,
        freeze_backbone: bool,
        prompt_layer: int = 0,
    ):
        super().__init__()
        self.backbone = backbone
        self.strategy = strategy
        self.freeze_backbone = freeze_backbone
        dim = backbone.config.hidden_size
        self._layer_slot = find_layer_slot(backbone)
        layers = getattr(*self._layer_slot)
        if not 0 <= prompt_layer < len(layers):
            raise ValueError(
                f"prompt_layer={prompt_layer} is outside this backbone's {len(layers)} layers: use 0 "
                f"(prompts at the input) up to {len(layers) - 1} (prompts before the last layer)."
            )
        self.prompt_layer = prompt_layer
        # Layer slices run through the backbone's forward; plain dict, so not registered twice.
        self._stacks: Dict[Tuple[int, int], nn.ModuleList] = {}
        self.prompts: Optional[PromptTable] = None
        self._deep_state: Optional[tuple] = None
        # Deep prompts are written at the input of every layer from here on: layer 1 after
        # input prompts, layer k with late prompts (lower layers never see a query).
        self.first_deep_layer = prompt_layer or 1
        if strategy in ("soft", "deep"):
            assert prompt_init is not None and prompt_init.shape == (n_prompts, prompt_length, dim)
            n_deep = len(layers) - self.first_deep_layer if strategy == "deep" else 0
            input_prompts = not (strategy == "deep" and prompt_layer)
            self.prompts = PromptTable(n_prompts, prompt_length, dim, n_deep, prompt_init, reparametrize, input_prompts)
            for index in range(n_deep):
                layers[self.first_deep_layer + index].register_forward_pre_hook(self._deep_hook(index))
        self.trigger_marker = nn.Parameter(torch.zeros(dim))
        self.head = SpanHead(dim, head_width, max_span_width, n_outputs, dropout)
        if freeze_backbone:
            for param in self.backbone.parameters():
                param.requires_grad_(False)

    @property
    def n_layers(self) -> int:
        return len(getattr(*self._layer_slot))

    def _deep_hook(self, layer: int):
        def hook(module: nn.Module, args: tuple):
            if self._deep_state is None:
                return None
            prompt_ids, start = self._deep_state
            hidden = args[0]
            vectors = self.prompts.layer_prompts(prompt_ids, layer).to(hidden.dtype)
            hidden = torch.cat([hidden[:, :start], vectors, hidden[:, start + vectors.shape[1] :]], dim=1)
            return (hidden,) + tuple(args[1:])

        return hook

    @torch.no_grad()
    def calibrate_deep_prompts(self, input_ids: torch.Tensor, prompt_start: int, prompt_init: torch.Tensor) -> None:
        """Start each layer's prompts at the hidden states that ``prompt_init``, used as input
        prompts, produces there, so deep prompts begin where soft prompts would and only add
        freedom. ``input_ids``: one ``[CLS] <prompt slots>`` row per prompt."""
        if self.prompts is None or self.prompts.deep is None:
            return
        embeds = self._embed(input_ids, None, prompt_start)
        vectors = prompt_init.to(embeds.device, embeds.dtype)
        end = prompt_start + vectors.shape[1]
        embeds = torch.cat([embeds[:, :prompt_start], vectors, embeds[:, end:]], dim=1)
        out = self.backbone(inputs_embeds=embeds, output_hidden_states=True)  # [i]: input of layer i
        for index in range(self.prompts.deep.shape[1]):
            self.prompts.deep[:, index] = out.hidden_states[self.first_deep_layer + index][:, prompt_start:end]

    def trainable_state(self) -> dict:
        """What a frozen-backbone artifact stores: everything but the backbone."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

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
    ) -> torch.Tensor:
        """Span logits ``(queries, window tokens, widths, outputs)``.

        ``shared`` (late prompts only) holds the distinct windows and query parts
        of the batch and the gather map that assembles layer ``k``'s input; ``cache``
        (inference only) keeps their lower-layer states across batches.
        """
        if self.prompt_layer == 0:
            embeds = self._embed(input_ids, prompt_ids, prompt_start)
            embeds = embeds + marker[..., None].to(embeds.dtype) * self.trigger_marker.to(embeds.dtype)
            hidden = self._run_layers(0, self.n_layers, embeds, attention_mask, prompt_ids, prompt_start)
        else:
            assert shared is not None, "late prompts need the batch's shared windows"
            hidden = self._late_hidden(attention_mask, prompt_ids, marker, prompt_start, shared, cache)
        return self.head(hidden, token_starts, token_ends).float()

    # --- pieces -------------------------------------------------------------------
    def _embed(self, input_ids: torch.Tensor, prompt_ids: Optional[torch.Tensor], prompt_start: int) -> torch.Tensor:
        """Token embeddings, with the input prompt vectors written over the prompt slots."""
        embeds = self.backbone.get_input_embeddings()(input_ids)
        if self.prompts is not None and self.prompts.vectors is not None and prompt_ids is not None:
            vectors = self.prompts.input_prompts(prompt_ids).to(embeds.dtype)
            end = prompt_start + vectors.shape[1]
            embeds = torch.cat([embeds[:, :prompt_start], vectors, embeds[:, end:]], dim=1)
        return embeds

    def _late_hidden(
        self,
        attention_mask: torch.Tensor,
        prompt_ids: torch.Tensor,
        marker: torch.Tensor,
        prompt_start: int,
        shared: Dict[str, torch.Tensor],
        cache: Optional[dict],
    ) -> torch.Tensor:
        k = self.prompt_layer
        windows = self._lower_states(shared["window_ids"], shared["window_mask"], shared["window_keys"],
                                     None, prompt_start, cache)
        with_prompts = shared["query_prompts"] if self.prompts is not None else None
        queries = self._lower_states(shared["query_ids"], shared["query_mask"], shared["query_keys"],
                                     with_prompts, prompt_start, cache)
        dim = windows.shape[-1]
        source = torch.cat([windows.new_zeros(1, dim), windows.reshape(-1, dim), queries.reshape(-1, dim).to(windows.dtype)])
        hidden = source[shared["gather"]]  # (B, S, D): [CLS] query part, window text, [SEP]
        hidden = hidden + marker[..., None].to(hidden.dtype) * self.trigger_marker.to(hidden.dtype)
        return self._run_layers(k, self.n_layers, hidden, attention_mask, prompt_ids, prompt_start)

    def _lower_states(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        keys: List[tuple],
        prompt_ids: Optional[torch.Tensor],
        prompt_start: int,
        cache: Optional[dict],
    ) -> torch.Tensor:
        """Layer ``k``'s input for each row of ``ids``; rows whose key is cached are not recomputed."""
        dim = self.backbone.config.hidden_size
        if ids.shape[0] == 0:
            return self.trigger_marker.new_zeros(0, ids.shape[1], dim)
        todo = list(range(len(keys))) if cache is None else [i for i, key in enumerate(keys) if key not in cache]
        computed = None
        if todo:
            rows = torch.as_tensor(todo, device=ids.device)
            sub_prompts = prompt_ids[rows] if prompt_ids is not None else None
            embeds = self._embed(ids[rows], sub_prompts, prompt_start)
            needs_grad = sub_prompts is not None or not self.freeze_backbone
            with torch.set_grad_enabled(torch.is_grad_enabled() and needs_grad):
                computed = self._run_layers(0, self.prompt_layer, embeds, mask[rows], sub_prompts, prompt_start)
        if cache is None:
            return computed
        for j, i in enumerate(todo):
            cache[keys[i]] = computed[j, : int(mask[i].sum())]
        out = self.trigger_marker.new_zeros(ids.shape[0], ids.shape[1], dim)
        for i, key in enumerate(keys):
            states = cache[key]
            out[i, : len(states)] = states.to(out.dtype)
        return out

    def _run_layers(
        self,
        lo: int,
        hi: int,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_ids: Optional[torch.Tensor],
        prompt_start: int,
    ) -> torch.Tensor:
        """Run backbone layers ``lo..hi-1`` on ``hidden`` (input embeddings when ``lo == 0``,
        else the input of layer ``lo``), through the backbone's own forward."""
        owner, name = self._layer_slot
        full = owner._modules[name]
        n_layers = len(full)
        handles = []
        captured: List[torch.Tensor] = []
        inputs = hidden
        if lo > 0:
            inputs = torch.zeros_like(hidden)  # the embeddings' output is replaced at layer lo

            def write_input(module: nn.Module, args: tuple):
                return (hidden,) + tuple(args[1:])

            handles.append(full[lo].register_forward_pre_hook(write_input, prepend=True))
        if hi < n_layers:
            handles.append(full[hi - 1].register_forward_hook(lambda m, a, out: captured.append(_first_tensor(out))))
        if (lo, hi) != (0, n_layers):
            if (lo, hi) not in self._stacks:
                self._stacks[(lo, hi)] = nn.ModuleList(list(full)[lo:hi])
            owner._modules[name] = self._stacks[(lo, hi)]
        if self.strategy == "deep" and prompt_ids is not None:
            self._deep_state = (prompt_ids, prompt_start)
        try:
            out = self.backbone(inputs_embeds=inputs, attention_mask=attention_mask)
        finally:
            owner._modules[name] = full
            self._deep_state = None
            for handle in handles:
                handle.remove()
        return captured[-1] if hi < n_layers else out.last_hidden_state


def prompt_init_from_words(
    embeddings: nn.Embedding, word_ids: List[List[int]], length: int, mode: str, seed: int = 0
) -> torch.Tensor:
    """Initial prompt vectors: the embeddings of each query's label words, cycled to
    ``length`` (``vocab``), or random vectors with the embedding table's scale (``random``)."""
    weight = embeddings.weight.detach().float().cpu()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(word_ids), length, weight.shape[1]), generator=generator) * weight.std()
    if mode == "random":
        return noise
    if mode != "vocab":
        raise ValueError(f"prompt_init must be 'vocab' or 'random', not {mode!r}.")
    rows = []
    for ids in word_ids:
        ids = ids or [0]
        picked = torch.tensor([ids[i % len(ids)] for i in range(length)])
        rows.append(weight[picked])
    return torch.stack(rows) + 0.1 * noise
