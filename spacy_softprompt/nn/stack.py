"""The backbone's layer stack, run a slice at a time by explicit per-layer calls.

Late prompts need layers ``0..k-1`` and ``k..L-1`` as two passes, and deep
prompts need to write between layers. Instead of patching the backbone, a
:class:`LayerStack` calls the backbone's own modules in order: the embedding
step (position embeddings etc.), each layer with the attention mask in the
form that family's layers expect, and the final norm, if the family has one.
The backbone is never modified, so several users may share it.

A backbone that ``accelerate`` spread over devices or offloaded (``device_map``)
runs the same way: its hooks move each module's inputs to that module's device
(and read offloaded weights in), and the stack hands every result back on the
device its input came from, where prompts and heads live.

Where the layers are and how they are called is an explicit table per model
type (:data:`MODEL_TYPES` -> :data:`FAMILIES`); an unknown model type is a clear
error, and ``backbone_family`` in the config says which family's conventions
an unlisted model type follows.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

# Called before layer ``i`` with its input; returns the input to use (e.g. with deep prompts).
BeforeLayer = Callable[[int, torch.Tensor], torch.Tensor]


class Family:
    """How one family of architectures embeds, masks and calls its layers."""

    layers_path: str  # dotted path of the layer ModuleList in the base model
    final_norm: Optional[str] = None  # applied after the last layer
    causal = False

    def embed(self, backbone: nn.Module, inputs_embeds: torch.Tensor, position_ids: Optional[torch.Tensor]) -> torch.Tensor:
        """Token embeddings (``(B, S, D)``, prompts already written) -> input of layer 0."""
        return inputs_embeds

    def mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """1/0 mask, ``(B, S)`` keys or ``(B, S, S)`` query x key -> additive mask the layers take."""
        if attention_mask.dim() == 3:
            keep = attention_mask[:, None].bool()  # (B, 1, S, S)
        else:
            keep = attention_mask[:, None, None, :].bool()  # (B, 1, 1, S)
        if self.causal:
            n = attention_mask.shape[1]
            keep = keep & torch.ones(n, n, dtype=torch.bool, device=keep.device).tril()[None, None]
        return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)

    def layer_kwargs(
        self, backbone: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, position_ids: Optional[torch.Tensor]
    ) -> Dict[str, object]:
        return {"attention_mask": mask}


class EncoderFamily(Family):
    """BERT, RoBERTa, XLM-R, ELECTRA: ``embeddings`` module, ``encoder.layer``."""

    layers_path = "encoder.layer"

    def embed(self, backbone, inputs_embeds, position_ids):
        hidden = backbone.embeddings(inputs_embeds=inputs_embeds, position_ids=position_ids)
        project = getattr(backbone, "embeddings_project", None)  # ELECTRA's smaller embeddings
        return project(hidden) if project is not None else hidden


class GPT2Family(Family):
    """GPT-2: learned absolute positions, blocks in ``h``, final ``ln_f``."""

    layers_path = "h"
    final_norm = "ln_f"
    causal = True

    def embed(self, backbone, inputs_embeds, position_ids):
        if position_ids is None:
            position_ids = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)[None]
        return backbone.drop(inputs_embeds + backbone.wpe(position_ids).to(inputs_embeds))


class LlamaFamily(Family):
    """Llama, Mistral, Qwen2: rotary positions given to every layer, final ``norm``."""

    layers_path = "layers"
    final_norm = "norm"
    causal = True

    def layer_kwargs(self, backbone, hidden, mask, position_ids):
        positions = position_ids if position_ids is not None else torch.arange(hidden.shape[1], device=hidden.device)[None]
        return {"attention_mask": mask, "position_ids": positions,
                "position_embeddings": backbone.rotary_emb(hidden, positions)}


FAMILIES: Dict[str, Family] = {"bert": EncoderFamily(), "gpt2": GPT2Family(), "llama": LlamaFamily()}
MODEL_TYPES: Dict[str, str] = {
    "bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert", "electra": "bert",
    "gpt2": "gpt2",
    "llama": "llama", "mistral": "llama", "qwen2": "llama",
}


def is_dispatched(backbone: nn.Module) -> bool:
    """Whether accelerate placed the backbone's modules on more than one device (or offloaded
    some): they stay where it put them, and its hooks move their inputs."""
    return len(set(getattr(backbone, "hf_device_map", {}).values())) > 1


def family_name(backbone: nn.Module, override: Optional[str] = None) -> str:
    """The family whose conventions ``backbone`` follows (``override``: the config's choice)."""
    model_type = getattr(backbone.config, "model_type", "?")
    name = override or MODEL_TYPES.get(model_type)
    if name is None:
        raise ValueError(
            f"Backbone model type {model_type!r} is not in the layer table (known: "
            f"{', '.join(sorted(MODEL_TYPES))}). If its layers are called like one of the families "
            f"{sorted(FAMILIES)}, set backbone_family = \"<family>\" in the model config."
        )
    if name not in FAMILIES:
        raise ValueError(f"Unknown backbone_family {name!r}: choose one of {', '.join(sorted(FAMILIES))}.")
    return name


class LayerStack:
    """Runs any slice ``lo..hi-1`` of a backbone's layers (not a module: it owns nothing)."""

    def __init__(self, backbone: nn.Module, family: Optional[str] = None):
        self.backbone = backbone
        self.family_name = family_name(backbone, family)
        self.family = FAMILIES[self.family_name]
        module: nn.Module = backbone
        for part in self.family.layers_path.split("."):
            module = getattr(module, part, None)
            if module is None:
                raise ValueError(
                    f"{type(backbone).__name__} has no {self.family.layers_path!r}: is backbone_family right?"
                )
        expected = getattr(backbone.config, "num_hidden_layers", len(module))
        if not isinstance(module, nn.ModuleList) or len(module) != expected:
            raise ValueError(f"{type(backbone).__name__}.{self.family.layers_path} is not its {expected} layers.")
        self.layers = module

    def __len__(self) -> int:
        return len(self.layers)

    def token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The backbone's embeddings of ``input_ids``, on their device."""
        return self.backbone.get_input_embeddings()(input_ids).to(input_ids.device)

    def embed(self, inputs_embeds: torch.Tensor, position_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.family.embed(self.backbone, inputs_embeds, position_ids).to(inputs_embeds.device)

    def run(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        lo: int = 0,
        hi: Optional[int] = None,
        before_layer: Optional[BeforeLayer] = None,
        position_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Layers ``lo..hi-1`` on ``hidden`` (the input of layer ``lo``); after the last layer,
        the family's final norm, so ``run(embed(x), mask)`` is the backbone's last hidden state.
        ``attention_mask``: ``(B, S)`` padding, or ``(B, S, S)`` who reads whom. ``before_layer``
        and the caller get the states on ``hidden``'s device, wherever the layers are."""
        hi = len(self.layers) if hi is None else hi
        device = hidden.device
        mask = self.family.mask(attention_mask, hidden.dtype)
        kwargs = self.family.layer_kwargs(self.backbone, hidden, mask, position_ids)
        for i in range(lo, hi):
            if before_layer is not None:
                hidden = before_layer(i, hidden.to(device))
            out = self.layers[i](hidden, **kwargs)
            hidden = out if isinstance(out, torch.Tensor) else out[0]
        if hi == len(self.layers) and self.family.final_norm:
            hidden = getattr(self.backbone, self.family.final_norm)(hidden)
        return hidden.to(device)
