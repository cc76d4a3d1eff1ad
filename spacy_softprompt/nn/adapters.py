"""Parameter-efficient adapters on the backbone, from ``peft`` (LoRA, IA3).

``peft`` provides the adapter layers, their injection into the backbone's own
modules (``inject_adapter_in_model``) and their state dict in its own format
(``get_peft_model_state_dict``). What stays ours: the prompts (per-row prompt
tables, late and deep prompts are not what ``peft``'s prompt-learning classes
express) and the choice of target modules per architecture family, with an
override in the config.

Adapters are orthogonal to the prompt strategy: a frozen backbone with soft
prompts plus LoRA on its attention is one configuration among others. The
frozen base weights stay bit-identical; only adapter tensors train.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

if TYPE_CHECKING:  # torch stays unimported until an adapter is built (the config layer reads this module)
    import torch
    from torch import nn

ADAPTER_NAME = "default"
# Per architecture family (nn/stack.py): LoRA targets; IA3 targets and which of them are feed-forward.
TARGETS: Dict[str, Dict[str, Tuple[List[str], List[str]]]] = {
    "bert": {"lora": (["query", "value"], []), "ia3": (["key", "value", "output.dense"], ["output.dense"])},
    "gpt2": {"lora": (["c_attn"], []), "ia3": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"])},
    "llama": {"lora": (["q_proj", "v_proj"], []), "ia3": (["k_proj", "v_proj", "down_proj"], ["down_proj"])},
}
# The name of the layer list in each family's module paths (encoder.layer.0..., h.0..., layers.0...):
# peft's layers_pattern, without which it does not find a GPT-2 or Llama layer's index.
LAYER_LISTS: Dict[str, str] = {"bert": "layer", "gpt2": "h", "llama": "layers"}


@dataclass
class AdapterSpec:
    """What to inject: ``kind`` "lora" or "ia3"; ``target_modules`` None: the family's default;
    ``layers`` None: every layer, else these layer indices only (LoRA; peft's ``layers_to_transform``)."""

    kind: str
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: Optional[List[str]] = None
    feedforward_modules: Optional[List[str]] = field(default=None)
    layers: Optional[List[int]] = None

    def __post_init__(self) -> None:
        """Settings peft would take and then do something else with (or nothing) are refused."""
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("target_modules = [] names no module: leave it out (null) for the family's defaults.")
        if self.layers is not None and not self.layers:
            raise ValueError("layers = [] names no layer (peft would take it as every layer): leave it out "
                             "(null) for every layer.")
        if self.kind == "lora" and not self.alpha > 0:
            raise ValueError(f"LoRA alpha must be above 0 (the update is scaled by alpha / r), not {self.alpha}.")

    def changes_layers_below(self, layer: int) -> bool:
        """Whether the adapter alters any layer under ``layer``: if not, a frozen backbone's
        states below it stay fixed (cacheable, as without an adapter)."""
        return self.layers is None or min(self.layers, default=layer) < layer

    def peft_config(self, family: str):
        from peft import IA3Config, LoraConfig

        if self.kind not in ("lora", "ia3"):
            raise ValueError(f"Unknown adapter kind {self.kind!r}: choose 'lora' or 'ia3'.")
        if self.target_modules is None and family not in TARGETS:
            raise ValueError(f"No default adapter targets for the {family!r} family: set target_modules.")
        targets, feedforward = TARGETS.get(family, {}).get(self.kind, ([], []))
        targets = list(self.target_modules or targets)
        layers = list(self.layers) if self.layers is not None else None
        if self.kind == "lora":
            return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets,
                              fan_in_fan_out=family == "gpt2", layers_to_transform=layers,
                              layers_pattern=LAYER_LISTS.get(family) if layers is not None else None)
        if layers is not None:
            raise ValueError("IA3 scales every layer (peft's IA3Config takes no layers_to_transform): set layers = null.")
        if self.feedforward_modules is None:  # the family's, where they are among the targets
            feedforward = [m for m in feedforward if m in targets]
        else:
            feedforward = list(self.feedforward_modules)
            stray = sorted(set(feedforward) - set(targets))
            if stray:
                raise ValueError(f"IA3 feedforward_modules {stray} are not among target_modules {targets}: "
                                 "a feed-forward module must also be a target.")
        return IA3Config(target_modules=targets, feedforward_modules=feedforward, fan_in_fan_out=family == "gpt2")


def inject(backbone: "nn.Module", spec: AdapterSpec, family: str, train_base: bool = False) -> None:
    """Add the adapter layers to ``backbone`` in place; they train, and the base weights only
    when ``train_base`` (an unfrozen backbone)."""
    import warnings

    from peft import inject_adapter_in_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        inject_adapter_in_model(spec.peft_config(family), backbone, adapter_name=ADAPTER_NAME)
    for name, param in backbone.named_parameters():
        param.requires_grad_(train_base or is_adapter_key(name))


def is_adapter_key(name: str) -> bool:
    return ".lora_" in name or ".ia3_" in name


def base_state_dict(backbone: "nn.Module") -> Dict[str, "torch.Tensor"]:
    """The backbone's own weights under their own names (what ``save_pretrained`` must
    write for a stored backbone): adapter tensors dropped, peft's ``base_layer`` unwrapped."""
    return {
        name.replace(".base_layer", ""): tensor
        for name, tensor in backbone.state_dict().items()
        if not is_adapter_key(name)
    }


def export_peft(backbone: "nn.Module", spec: AdapterSpec, family: str, path: Path) -> None:
    """The adapter in ``peft``'s own format (``adapter_config.json`` + safetensors), for use outside spaCy."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    config = spec.peft_config(family)
    config.base_model_name_or_path = getattr(backbone.config, "_name_or_path", None)
    config.save_pretrained(str(path))
    state = get_peft_model_state_dict(backbone, adapter_name=ADAPTER_NAME)
    # named as a PeftModel wrapping this backbone names them, so PeftModel.from_pretrained reads them
    state = {f"base_model.model.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    save_file(state, str(path / "adapter_model.safetensors"))
