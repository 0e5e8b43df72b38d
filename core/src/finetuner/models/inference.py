"""bf16 inference copies: what towers run instead of autocast when ``encode`` computes in bf16.

Autocast casts every weight to bf16 again in each batch; a copy made once is faster. The
copy is a plain attribute of the tower, not a submodule, so it is never saved, trained or
moved by ``.to()``; it is remade when any weight or buffer of the original changes in place
or moves, and a forward pass with gradients (training) frees it. Under ``compile=True``
(:func:`finetuner.runtime.compiled`) the copy is compiled with its weights frozen into the
graph, which is safe because a changed weight makes a new copy.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from itertools import chain
from typing import Any

import torch
from torch import nn

logger = logging.getLogger("finetuner")
COPY_ATTRIBUTE = "_bf16_copy"
# Under finetuner.runtime.compiled(): how to call a copy where an outer torch.compile does not trace it.
_outside_compile: ContextVar[Callable[..., Any] | None] = ContextVar("outside_compile", default=None)


def bf16_inference(device_type: str) -> bool:
    """True under inference mode with bf16 autocast on ``device_type`` (what ``encode`` sets up)."""
    return (
        torch.is_inference_mode_enabled()
        and torch.is_autocast_enabled(device_type)
        and torch.get_autocast_dtype(device_type) == torch.bfloat16
    )


@contextlib.contextmanager
def compiling_copies(enabled: bool = True) -> Iterator[None]:
    """Inside, bf16 copies made or used are compiled (weights frozen into the graph)."""
    # an outer torch.compile must neither trace the copying nor inline the frozen copy
    token = _outside_compile.set(torch.compiler.disable(_call_copy) if enabled else None)
    try:
        yield
    finally:
        _outside_compile.reset(token)


def run_bf16_copy(
    owner: nn.Module, module: nn.Module, *args: Any, prepare: Callable[[nn.Module], nn.Module] | None = None, **kwargs: Any
) -> Any:
    """Call ``owner``'s bf16 copy of ``module`` (see :func:`bf16_copy`) with ``args`` and ``kwargs``."""
    call = _outside_compile.get() or _call_copy
    return call(owner, module, prepare, args, kwargs)


def _call_copy(
    owner: nn.Module, module: nn.Module, prepare: Callable[[nn.Module], nn.Module] | None, args: tuple, kwargs: dict
) -> Any:
    return bf16_copy(owner, module, prepare)(*args, **kwargs)


def bf16_copy(owner: nn.Module, module: nn.Module, prepare: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
    """``owner``'s cached bf16, eval-mode copy of ``module`` (``prepare`` runs on the fp32 copy first)."""
    compile_it = _outside_compile.get() is not None
    key = (compile_it, *((t.data_ptr(), t._version) for t in chain(module.parameters(), module.buffers())))
    cached = owner.__dict__.get(COPY_ATTRIBUTE)
    if cached is None or cached[0] != key:
        owner.__dict__[COPY_ATTRIBUTE] = None  # free the old copy before making the new one
        duplicate = copy.deepcopy(module).eval()
        if prepare is not None:
            duplicate = prepare(duplicate)
        duplicate = duplicate.to(torch.bfloat16)
        if compile_it:
            duplicate = torch.compile(duplicate, options={"freezing": True})
        owner.__dict__[COPY_ATTRIBUTE] = cached = (key, duplicate)
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
