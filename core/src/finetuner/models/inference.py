"""bf16 inference copies: what towers run instead of autocast when ``encode`` computes in bf16.

Autocast casts every weight to bf16 again in each batch; a copy made once is faster. The
copy is a plain attribute of the tower, not a submodule, so it is never saved, trained or
moved by ``.to()``; it is remade when any weight or buffer of the original changes in place
or moves, and a forward pass with gradients (training) frees it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from itertools import chain

import torch
from torch import nn

logger = logging.getLogger("finetuner")
COPY_ATTRIBUTE = "_bf16_copy"


def bf16_inference(device_type: str) -> bool:
    """True under inference mode with bf16 autocast on ``device_type`` (what ``encode`` sets up)."""
    return (
        torch.is_inference_mode_enabled()
        and torch.is_autocast_enabled(device_type)
        and torch.get_autocast_dtype(device_type) == torch.bfloat16
    )


def bf16_copy(owner: nn.Module, module: nn.Module, prepare: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
    """``owner``'s cached bf16, eval-mode copy of ``module`` (``prepare`` runs on the fp32 copy first)."""
    key = tuple((t.data_ptr(), t._version) for t in chain(module.parameters(), module.buffers()))
    cached = owner.__dict__.get(COPY_ATTRIBUTE)
    if cached is None or cached[0] != key:
        owner.__dict__[COPY_ATTRIBUTE] = None  # free the old copy before making the new one
        duplicate = copy.deepcopy(module).eval()
        if prepare is not None:
            duplicate = prepare(duplicate)
        owner.__dict__[COPY_ATTRIBUTE] = cached = (key, duplicate.to(torch.bfloat16))
    return cached[1]


def free_bf16_copy(owner: nn.Module) -> None:
    owner.__dict__.pop(COPY_ATTRIBUTE, None)


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """The module with each eval-mode BatchNorm folded into the convolution before it.

    Works on modules :func:`torch.fx.symbolic_trace` can trace (torchvision and most timm
    CNNs); others are returned unchanged.
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module)
    except Exception as error:  # noqa: BLE001 - any tracing failure: run the module as it is
        logger.debug("BatchNorm folding skipped for %s: %s", type(module).__name__, error)
        return module
