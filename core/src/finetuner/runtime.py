"""Device and precision: where the model runs and whether it computes in bf16."""

from __future__ import annotations

import contextlib
import functools
import logging
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from finetuner.choices import DEVICES, PRECISIONS
from finetuner.errors import OptionError, UnknownNameError

logger = logging.getLogger("finetuner")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise UnknownNameError("device", str(device), DEVICES)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"device={device!r} was asked for but no CUDA GPU is available; use device='cpu' or 'auto'")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise OptionError(f"device={device!r} is not a device: use cpu, cuda, cuda:N or auto") from None
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise OptionError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    return resolved


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU runs bf16 matmuls natively (AMX-bf16 or AVX512-bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        flags = []
    if "amx_bf16" in flags or "avx512_bf16" in flags:
        return True
    return "AMX" in torch.backends.cpu.get_cpu_capability().upper()


def cuda_has_fast_bf16(device: torch.device) -> bool:
    """True for GPUs with native bf16 (CUDA compute capability 8.0+, or ROCm); older ones only emulate it, slowly."""
    if torch.version.hip:
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_properties(index).major >= 8


@functools.cache
def _log_choice(device_type: str, dtype: str, reason: str) -> None:
    logger.info("precision: %s on %s (%s)", dtype, device_type, reason)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype to compute in (bf16) or None for plain fp32; ``"auto"`` decides by hardware."""
    if precision not in PRECISIONS:
        raise UnknownNameError("precision", precision, PRECISIONS)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        fast, reason = cuda_has_fast_bf16(device), "GPU with native bf16"
    elif device.type == "cpu":
        fast, reason = cpu_has_fast_bf16(), "CPU with AMX-bf16 or AVX512-bf16"
    else:
        fast, reason = False, "no fast bf16 known for this device"
    _log_choice(device.type, "bf16 autocast" if fast else "fp32", reason if fast else f"no {reason}")
    return torch.bfloat16 if fast else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def prepare(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model to the device, CNN towers in channels_last memory format."""
    model.to(device)
    towers = getattr(model, "towers", {})
    for tower in towers.values():
        if getattr(tower, "channels_last", False):
            tower.to(memory_format=torch.channels_last)
    return model


_COMPILED_FORWARDS: dict[Callable, Callable] = {}  # a tower class's forward -> its torch.compile wrapper


@contextlib.contextmanager
def compiled(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Inside, every tower's forward runs through :func:`torch.compile`; on exit the plain forward is back.

    Only the forward function is compiled, the module is never wrapped, so ``state_dict`` keys
    (and saved artifacts) are the same as without compiling. Compiled code is cached per tower
    class and reused by later calls; entering again for a tower already compiled does nothing.
    Towers' bf16 inference copies (:meth:`finetuner.models.Tower.run_encoder`) are compiled on their own,
    with their weights frozen into the graph.
    """
    from finetuner.models._inference import compiling_copies

    towers = [t for t in getattr(model, "towers", {}).values() if "forward" not in vars(t)] if enabled else []
    for tower in towers:
        function = type(tower).forward
        if function not in _COMPILED_FORWARDS:
            _COMPILED_FORWARDS[function] = torch.compile(function)
        tower.forward = types.MethodType(_COMPILED_FORWARDS[function], tower)
    try:
        with compiling_copies(enabled):
            yield
    finally:
        for tower in towers:
            del tower.forward


def move(features: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in features.items()}


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
