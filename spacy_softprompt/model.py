"""The registered thinc architecture ``spacy_softprompt.SoftPromptIE.v1``.

The config block describes the network (backbone, strategy, prompt length,
span head); the PyTorch network itself is built later, by the component's
``initialize`` (from the backbone name) or ``from_disk`` (from the saved
artifact), and attached as the model's PyTorch shim. Building it lazily is
what lets a saved pipeline load on a machine where the training-time backbone
path does not exist, and lets thinc place it on the device that ``--gpu-id``
selected.

Input: a :class:`~spacy_softprompt.queries.Batch`. Output: span logits of
shape ``(queries, window tokens, span widths, outputs)``.
"""

import os
import warnings
from typing import Any, Callable, Dict, Tuple

from spacy.util import registry
from thinc.api import ArgsKwargs, Model, PyTorchGradScaler, PyTorchShim, torch2xp, xp2torch
from thinc.types import Floats4d

from .queries import STRATEGIES, Batch


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
) -> Model[Batch, Floats4d]:
    """A transformer with learned prompts and an MRC span head.

    backbone: Hugging Face id, local folder, or "default" (offline all-MiniLM-L6-v2).
    strategy: "none" (no query part), "hard" (questions), "soft" (learned prompt
        vectors) or "deep" (learned prompts at every layer).
    freeze_backbone: train only prompts and heads; the backbone is left bit-identical.
    prompt_length: learned vectors per query (soft/deep), 8 to 128 in the paper's sweep.
    prompt_init: "vocab" (embeddings of the label's words) or "random".
    reparametrize: pass prompts through a residual MLP while training (P-tuning).
    prompt_layer: 0 puts the query part at the input (one full backbone pass per
        window and query); k > 0 runs layers below k once per window, shared by all
        its queries, and lets the query part in at layer k (late prompts).
    max_length: subwords per backbone sequence (query part + text window).
    window_overlap: subwords shared by consecutive windows of a long document.
    max_span_width: longest answer span, in spaCy tokens.
    batch_size: sequences per backbone pass.
    mixed_precision: autocast on CUDA (ignored on CPU).
    trust_remote_code: only if you trust the backbone's repository.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}.")
    if strategy in ("soft", "deep") and not 1 <= prompt_length <= 512:
        raise ValueError(f"prompt_length must be between 1 and 512, not {prompt_length}.")
    if prompt_layer < 0:
        raise ValueError(f"prompt_layer must be 0 (input prompts) or a layer index, not {prompt_layer}.")
    settings = dict(
        backbone=backbone,
        strategy=strategy,
        freeze_backbone=freeze_backbone,
        prompt_length=prompt_length,
        prompt_init=prompt_init,
        reparametrize=reparametrize,
        prompt_layer=prompt_layer,
        max_length=max_length,
        window_overlap=window_overlap,
        max_span_width=max_span_width,
        head_width=head_width,
        dropout=dropout,
        batch_size=batch_size,
        mixed_precision=mixed_precision,
        trust_remote_code=trust_remote_code,
    )
    return Model("softprompt_ie", forward, attrs={"settings": settings}, shims=[])


def attach_network(model: Model, network: Any) -> None:
    """Put the PyTorch network inside ``model`` (on thinc's current device)."""
    import torch

    use_amp = bool(model.attrs["settings"]["mixed_precision"]) and torch.cuda.is_available()
    shim = PyTorchShim(network, mixed_precision=use_amp, grad_scaler=PyTorchGradScaler(enabled=use_amp))
    model.shims[:] = [shim]


def get_network(model: Model) -> Any:
    if not model.shims:
        raise ValueError(
            "The softprompt_ie model has no network yet: call nlp.initialize() (training) "
            "or load a trained pipeline with spacy.load()."
        )
    return model.shims[0]._model


def forward(model: Model[Batch, Floats4d], batch: Batch, is_train: bool) -> Tuple[Floats4d, Callable]:
    get_network(model)
    shim = model.shims[0]
    device = shim.device

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
            cache=batch.cache,
        ),
    )
    if not is_train:
        return torch2xp(shim.predict(inputs), ops=model.ops), lambda d: batch
    output, torch_backprop = shim.begin_update(inputs)

    def backprop(d_logits: Floats4d) -> Batch:
        grad = xp2torch(d_logits, device=device)
        torch_backprop(ArgsKwargs(args=(output,), kwargs={"grad_tensors": (grad,)}))
        return batch

    return torch2xp(output, ops=model.ops), backprop


def settings_of(model: Model) -> Dict[str, Any]:
    return model.attrs["settings"]
