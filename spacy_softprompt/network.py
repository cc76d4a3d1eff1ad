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
"""
from __future__ import annotations

import math
from typing import List, Optional

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
    ):
        super().__init__()
        self.vectors = nn.Parameter(init.clone())  # (P, N, D)
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


def find_layers(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's stack of transformer layers (BERT ``encoder.layer``, GPT-2 ``h``, ...)."""
    n_layers = backbone.config.num_hidden_layers
    for module in backbone.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"Cannot find the {n_layers} transformer layers of {type(backbone).__name__}.")


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
    ):
        super().__init__()
        self.backbone = backbone
        self.strategy = strategy
        self.freeze_backbone = freeze_backbone
        dim = backbone.config.hidden_size
        self.prompts: Optional[PromptTable] = None
        self._deep_state: Optional[tuple] = None
        if strategy in ("soft", "deep"):
            assert prompt_init is not None and prompt_init.shape == (n_prompts, prompt_length, dim)
            layers = find_layers(backbone)
            n_deep = len(layers) - 1 if strategy == "deep" else 0
            self.prompts = PromptTable(n_prompts, prompt_length, dim, n_deep, prompt_init, reparametrize)
            if n_deep:
                for index, layer in enumerate(layers):
                    if index > 0:
                        layer.register_forward_pre_hook(self._deep_hook(index - 1))
        self.trigger_marker = nn.Parameter(torch.zeros(dim))
        self.head = SpanHead(dim, head_width, max_span_width, n_outputs, dropout)
        if freeze_backbone:
            for param in self.backbone.parameters():
                param.requires_grad_(False)

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
    def calibrate_deep_prompts(self, input_ids: torch.Tensor, prompt_start: int) -> None:
        """Start each layer's prompts at the hidden states the input prompts produce there,
        so deep prompts begin exactly where soft prompts would and only add freedom."""
        if self.prompts is None or self.prompts.deep is None:
            return
        prompt_ids = torch.arange(len(self.prompts.vectors), device=input_ids.device)
        embeds = self.backbone.get_input_embeddings()(input_ids)
        vectors = self.prompts.vectors[prompt_ids].to(embeds.dtype)
        end = prompt_start + vectors.shape[1]
        embeds = torch.cat([embeds[:, :prompt_start], vectors, embeds[:, end:]], dim=1)
        out = self.backbone(inputs_embeds=embeds, output_hidden_states=True)
        for layer in range(self.prompts.deep.shape[1]):
            self.prompts.deep[:, layer] = out.hidden_states[layer + 1][:, prompt_start:end]

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
    ) -> torch.Tensor:
        embeds = self.backbone.get_input_embeddings()(input_ids)
        if self.prompts is not None:
            vectors = self.prompts.input_prompts(prompt_ids).to(embeds.dtype)
            end = prompt_start + vectors.shape[1]
            embeds = torch.cat([embeds[:, :prompt_start], vectors, embeds[:, end:]], dim=1)
            if self.strategy == "deep":
                self._deep_state = (prompt_ids, prompt_start)
        embeds = embeds + marker[..., None].to(embeds.dtype) * self.trigger_marker.to(embeds.dtype)
        try:
            hidden = self.backbone(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        finally:
            self._deep_state = None
        return self.head(hidden, token_starts, token_ends).float()


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
