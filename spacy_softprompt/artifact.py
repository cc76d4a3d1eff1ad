"""The saved form of a trained model, without pickles and without running its code.

Layout of the model folder (``<pipeline>/<component>/model/``)::

    task.json                schema, hard-prompt texts, backbone reference, the settings
                             the tensors were trained with (``trained_with``)
    trainable.safetensors    prompts, marker and span head
    backbone/                only when the backbone is stored inside:
                             config.json, model.safetensors, tokenizer files

With a frozen backbone the default is to store only ``trainable.safetensors``
(a few hundred kB) plus the backbone's name and SHA-256 weight hash; loading
re-resolves the backbone and refuses one whose hash differs. A fine-tuned
backbone is always stored inside.

Nothing here executes code from the artifact: JSON, safetensors, and
``from_pretrained(use_safetensors=True)`` with ``trust_remote_code`` off. A
saved config cannot switch remote code on for itself: a pipeline whose config
says ``trust_remote_code = true`` runs its code only where the person loading
sets ``SPACY_SOFTPROMPT_TRUST_REMOTE_CODE=1``; the variable alone runs nothing.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import srsly

from .backbone import Backbone, BackboneNotFound, get_backbone, load_backbone, portable_reference
from .nn.adapters import is_adapter_key

TASK_FILE = "task.json"
TRAINABLE_FILE = "trainable.safetensors"
BACKBONE_DIR = "backbone"
TRUST_ENV = "SPACY_SOFTPROMPT_TRUST_REMOTE_CODE"


class BackboneMismatch(ValueError):
    """The backbone found at load time is not the one the prompts were trained on."""


class DamagedArtifact(ValueError):
    """A saved file is missing or unreadable; the message names it."""


def remote_code_allowed_at_load(saved_setting: bool) -> bool:
    """Remote code when loading a saved pipeline: only if its config asks for it and the
    environment allows it. A saved ``trust_remote_code = true`` alone is ignored, with a
    warning; the environment alone runs nothing of a pipeline that does not ask."""
    allowed = os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")
    if saved_setting and not allowed:
        warnings.warn(
            "This pipeline's config says trust_remote_code = true; that is ignored when loading, so "
            f"no code from the pipeline runs. To allow it, set {TRUST_ENV}=1 in the environment.",
            stacklevel=3,
        )
    return saved_setting and allowed


def save_model(path: Path, task: Optional[Dict[str, Any]], network: Any, tokenizer: Any, embed_backbone: bool) -> None:
    """Write the model folder; ``task`` None: not initialized yet (nothing learned)."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    record: Dict[str, Any] = {"initialized": task is not None}
    if task is not None:
        record.update(task, backbone_stored=bool(embed_backbone))
        state = {k: v.detach().cpu().contiguous() for k, v in network.trainable_state().items()}
        save_file(state, str(path / TRAINABLE_FILE))
        if embed_backbone:
            network.backbone.save_pretrained(
                str(path / BACKBONE_DIR), state_dict=network.backbone_state(), safe_serialization=True
            )
            tokenizer.save_pretrained(str(path / BACKBONE_DIR))
    srsly.write_json(path / TASK_FILE, record)


def read_task(path: Path) -> Optional[Dict[str, Any]]:
    """The saved task of a model folder (None: saved before initialize)."""
    file = path / TASK_FILE
    if not file.exists():
        raise DamagedArtifact(f"{file} is missing: this is not a complete softprompt_ie model folder.")
    try:
        record = srsly.read_json(file)
    except ValueError as err:
        raise DamagedArtifact(f"{file} is not valid JSON ({err}).") from None
    return record if record.get("initialized") else None


def load_backbone_for(
    path: Path, task: Dict[str, Any], trust_remote_code: bool, share: bool, placed: Optional[Dict[str, Any]] = None,
    configured: Optional[str] = None,
) -> Tuple[Backbone, Dict[str, Any]]:
    """The backbone a saved model needs, and the task naming it where it was found: stored inside,
    or re-resolved (shared when ``share``; placed by the loading config's ``placed``) and verified
    against the saved weight hash. Where the name it was saved with finds nothing (a moved
    folder), the loading config's backbone (``configured``, e.g. ``spacy.load(...,
    config={"components.<name>.model.backbone": ...})``) is tried, verified the same way."""
    if task.get("backbone_stored"):
        if placed is not None:
            raise ValueError(f"{path} stores its backbone inside; device_map places a backbone that a pipeline "
                             "names (store_backbone = false): load it with device_map = null.")
        return load_stored_backbone(path / BACKBONE_DIR, trust_remote_code), task
    name = task["backbone"]["name"]
    try:
        backbone = get_backbone(name, trust_remote_code=trust_remote_code, share=share, placed=placed)
    except BackboneNotFound as err:
        if configured is None or portable_reference(configured) == name:
            raise BackboneNotFound(
                f"{err}\nThe prompts in {path} were trained on it. If it moved, name its new place when loading: "
                f"spacy.load(..., config={{'components.<name>.model.backbone': '<its folder>'}}) (the weights "
                "are checked against the saved hash)."
            ) from None
        name = configured
        backbone = get_backbone(name, trust_remote_code=trust_remote_code, share=share, placed=placed)
    expected = task["backbone"]["sha256"]
    if backbone.sha256 != expected:
        raise BackboneMismatch(
            f"The prompts in {path} were trained on backbone {task['backbone']['name']!r} with weight "
            f"hash {expected[:16]}..., but {name!r} now resolves to "
            f"weights with hash {backbone.sha256[:16]}.... Install the original backbone, or retrain. "
            "(Save with store_backbone = true for a self-contained pipeline.)"
        )
    return backbone, dict(task, backbone={"name": portable_reference(name), "sha256": expected})


def load_stored_backbone(folder: Path, trust_remote_code: bool) -> Backbone:
    """The backbone a pipeline stores inside; a damaged or incomplete one is an error naming it,
    never random weights in place of the lost ones."""
    if not (folder / "config.json").is_file():  # transformers would guess a model type from the path
        raise DamagedArtifact(f"{folder / 'config.json'} is missing: the stored backbone cannot be read. Copy the "
                              "complete pipeline folder again, or retrain.")
    unknown = _unknown_model_type(folder / "config.json")
    if unknown is not None:
        import transformers

        raise ValueError(f"{folder} holds a backbone of model type {unknown!r}, which the installed transformers "
                         f"({transformers.__version__}) does not know: the pipeline was saved with a newer one. "
                         "Upgrade transformers (pip install -U transformers).")
    try:
        return Backbone(*load_backbone(str(folder), trust_remote_code=trust_remote_code, complete=True))
    except (ImportError, MemoryError, PermissionError):  # a package, memory or access: not the folder's damage
        raise
    except Exception as err:  # safetensors, tokenizers and torch raise their own errors, deep inside
        if "trust_remote_code" in str(err):
            raise ValueError(f"{folder} holds a backbone with its own code, which runs only when the pipeline's config "
                             f"says trust_remote_code = true and {TRUST_ENV}=1 is set where it loads.") from None
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DamagedArtifact(f"{folder}: the stored backbone is damaged and cannot be loaded ({type(err).__name__}: "
                              f"{first}). Copy the complete pipeline folder again, or retrain.") from None


def _unknown_model_type(config_file: Path) -> Optional[str]:
    """The model type a stored backbone's config names when transformers has no such type (a
    pipeline saved with a newer transformers); None when it knows it, the backbone brings its
    own code (``auto_map``), or the file is unreadable (the load then says why)."""
    from transformers import CONFIG_MAPPING

    try:
        config = srsly.read_json(config_file)
    except (OSError, ValueError):
        return None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or "auto_map" in config or model_type in CONFIG_MAPPING:
        return None
    return model_type


def load_trainable(path: Path) -> Dict[str, Any]:
    """The learned tensors; a missing or damaged file is an error that names it."""
    from safetensors.torch import load_file

    file = path / TRAINABLE_FILE
    if not file.exists():
        raise DamagedArtifact(
            f"{file} is missing, but {path / TASK_FILE} says the model was trained: the learned "
            "prompts and head are gone. Copy the complete pipeline folder again, or retrain."
        )
    try:
        return load_file(str(file))
    except Exception as err:  # safetensors raises its own SafetensorError, OSError, ...
        raise DamagedArtifact(f"{file} is damaged and cannot be read ({err}). Copy it again, or retrain.") from None


def load_state(network: Any, path: Path) -> None:
    """Load the learned tensors into ``network``, checking that they fit it."""
    state = load_trainable(path)
    own = network.state_dict()
    missing = [k for k in own if k not in state and (not k.startswith("backbone.") or is_adapter_key(k))]
    unexpected = [k for k in state if k not in own]
    reshaped = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or reshaped:
        raise DamagedArtifact(
            f"{path / TRAINABLE_FILE} does not fit this component's config (missing: {missing[:5]}, "
            f"unexpected: {unexpected[:5]}, other shape: {reshaped[:3]}); was it saved with other settings?"
        )
    network.load_state_dict(state, strict=False)


def folder_to_bytes(write: Callable[[Path], None]) -> bytes:
    """Serialize by writing a folder and packing its files (one format for disk and bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root)
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return srsly.msgpack_dumps(files)


def bytes_to_folder(data: bytes, read: Callable[[Path], None]) -> None:
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
