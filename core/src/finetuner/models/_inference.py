"""bf16 inference copies: what towers run instead of autocast when ``encode`` computes in bf16.

Private: towers reach this through :meth:`finetuner.models.Tower.run_encoder`.

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
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from itertools import chain
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from finetuner.lora import merge_adapters

if TYPE_CHECKING:
    from finetuner.models.tower import Tower

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


def run_encoder(owner: Tower, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
    """``module(*args, **kwargs)``, through ``owner``'s bf16 copy of it under bf16 inference."""
    device_type = next((t.device.type for t in chain(args, kwargs.values()) if isinstance(t, torch.Tensor)), "cpu")
    if bf16_inference(device_type):
        call = _outside_compile.get() or _call_copy
        return call(owner, module, device_type, args, kwargs)
    if torch.is_grad_enabled():
        free_bf16_copy(owner)  # training: free the inference copy
    return module(*args, **kwargs)


def _call_copy(owner: Tower, module: nn.Module, device_type: str, args: tuple, kwargs: dict[str, Any]) -> Any:
    duplicate = bf16_copy(owner, module, device_type)
    args, kwargs = _cast((args, kwargs), torch.float32, torch.bfloat16)
    with contextlib.nullcontext() if owner.bf16_autocast else torch.autocast(device_type, enabled=False):
        return _cast(duplicate(*args, **kwargs), torch.bfloat16, torch.float32)


def _cast(tree: Any, source: torch.dtype, target: torch.dtype) -> Any:
    """``tree`` (tensors in tuples, lists, dicts, model outputs) with its ``source`` tensors cast to ``target``."""
    return pytree.tree_map_only(torch.Tensor, lambda t: t.to(target) if t.dtype == source else t, tree)


def bf16_copy(owner: Tower, module: nn.Module, device_type: str) -> nn.Module:
    """``owner``'s cached bf16, eval-mode copy of ``module``, made by ``owner.prepare_bf16_copy``."""
    compile_it = _outside_compile.get() is not None
    key = (compile_it, *((t.data_ptr(), t._version) for t in chain(module.parameters(), module.buffers())))
    cached = owner.__dict__.get(COPY_ATTRIBUTE)
    if cached is None or cached[0] != key:
        owner.__dict__[COPY_ATTRIBUTE] = None  # free the old copy before making the new one
        duplicate = copy.deepcopy(module).eval()
        merge_adapters(duplicate)  # LoRA adapters folded into the copy's weights: inference at the base model's cost
        duplicate = owner.prepare_bf16_copy(duplicate, device_type).to(torch.bfloat16)
        if compile_it:
            duplicate = torch.compile(duplicate, options={"freezing": True})
        owner.__dict__[COPY_ATTRIBUTE] = cached = (key, duplicate)
    return cached[1]


def free_bf16_copy(owner: nn.Module) -> None:
    owner.__dict__.pop(COPY_ATTRIBUTE, None)
