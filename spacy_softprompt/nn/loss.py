"""The training loss: binary cross-entropy over candidate spans, averaged over queries."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def span_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, n_queries: int) -> Tuple[float, torch.Tensor]:
    """Loss and its gradient with respect to ``logits``: masked-in candidates count,
    summed per query and averaged over the ``n_queries`` of the whole update (one
    update spans several backbone batches)."""
    x = logits.detach().float().requires_grad_(True)
    loss = F.binary_cross_entropy_with_logits(
        x, targets.to(x.dtype), weight=mask.to(x.dtype), reduction="sum"
    ) / max(1, n_queries)
    loss.backward()
    return float(loss.detach()), x.grad
