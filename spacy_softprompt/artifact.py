"""Saving and loading the component's learned state, without pickles.

Layout of a saved component folder::

    cfg.json                 schema, decoding settings, backbone reference
    trainable.safetensors    prompts, marker and span head
    backbone/                only when the backbone is stored inside:
                             config.json, model.safetensors, tokenizer files

With a frozen backbone the default is to store only ``trainable.safetensors``
(a few hundred kB) plus the backbone's name and SHA-256 weight hash; loading
re-resolves the backbone and refuses one whose hash differs. A fine-tuned
backbone is always stored inside. Nothing here executes code from the
artifact: JSON, safetensors and ``from_pretrained(use_safetensors=True,
trust_remote_code=False)`` only.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, Tuple

import srsly

from .backbone import load_backbone, weights_hash

CFG_FILE = "cfg.json"
TRAINABLE_FILE = "trainable.safetensors"
BACKBONE_DIR = "backbone"


class BackboneMismatch(ValueError):
    """The backbone found at load time is not the one the prompts were trained on."""


def save_component(path: Path, cfg: Dict[str, Any], network: Any, tokenizer: Any, embed_backbone: bool) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    cfg = dict(cfg, backbone_stored=bool(network is not None and embed_backbone))
    if network is not None:
        state = {k: v.detach().cpu().contiguous() for k, v in network.trainable_state().items()}
        save_file(state, str(path / TRAINABLE_FILE))
        if embed_backbone:
            network.backbone.save_pretrained(str(path / BACKBONE_DIR), safe_serialization=True)
            tokenizer.save_pretrained(str(path / BACKBONE_DIR))
    srsly.write_json(path / CFG_FILE, cfg)


def load_backbone_for(path: Path, cfg: Dict[str, Any], trust_remote_code: bool) -> Tuple[Any, Any]:
    """The backbone a saved component needs: stored inside, or re-resolved and verified."""
    if cfg.get("backbone_stored"):
        return load_backbone(str(path / BACKBONE_DIR), trust_remote_code=trust_remote_code)
    reference = cfg["backbone"]
    backbone, tokenizer = load_backbone(reference["name"], trust_remote_code=trust_remote_code)
    found = weights_hash(backbone)
    if found != reference["sha256"]:
        raise BackboneMismatch(
            f"The prompts in {path} were trained on backbone {reference['name']!r} with weight "
            f"hash {reference['sha256'][:16]}..., but {reference['name']!r} now resolves to "
            f"weights with hash {found[:16]}.... Install the original backbone, or retrain. "
            "(Save with store_backbone = true for a self-contained pipeline.)"
        )
    return backbone, tokenizer


def load_trainable(path: Path) -> Dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / TRAINABLE_FILE))


def folder_to_bytes(write) -> bytes:
    """Serialize by writing a folder and packing its files (one format for disk and bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root)
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return srsly.msgpack_dumps(files)


def bytes_to_folder(data: bytes, read) -> None:
    files = srsly.msgpack_loads(data)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, content in files.items():
            target = root / name
            if root.resolve() not in target.resolve().parents:
                raise ValueError(f"Refusing a serialized file name outside its folder: {name!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        read(root)
