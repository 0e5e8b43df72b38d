"""Where weights come from: offline checks before any download, and local state-dict files."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from finetuner import DataError, ModelNotAvailableError

PROBE_TIMEOUT_S = 3.0
ALTERNATIVES = "use pretrained=False for random init or weights=PATH to load a local .pth/.safetensors file"


def not_available(model: str, reason: str) -> ModelNotAvailableError:
    """The one-sentence error for pretrained weights that cannot be had offline."""
    return ModelNotAvailableError(f"Pretrained weights for {model} are not available offline ({reason}): {ALTERNATIVES}.")


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the host of ``url`` (or the configured proxy) accepts a TCP connection within ``timeout``.

    Runs in a daemon thread, so a DNS lookup that hangs costs ``timeout`` seconds at most.
    """
    parsed = urlparse(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    target = urlparse(proxy) if proxy else parsed
    host = target.hostname
    port = target.port or (443 if target.scheme == "https" else 80)
    if not host:
        return False
    result: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result) and result[0]


def torch_hub_checkpoint(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps the file of ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def ensure_downloadable(url: str, model: str) -> None:
    """Return when the file of ``url`` is in the torch hub cache or its host is reachable; raise otherwise."""
    cached = torch_hub_checkpoint(url)
    if cached.is_file():
        return
    if not reachable(url):
        raise not_available(model, f"{cached.name} is not in {cached.parent} and {urlparse(url).hostname} cannot be reached")


def load_weights_file(module: nn.Module, path: str | Path, *, model: str, ignore: Sequence[str] = ()) -> None:
    """Load a local ``.pth``/``.pt``/``.bin`` (``weights_only``) or ``.safetensors`` state dict into ``module``.

    Keys in the file under an ``ignore`` prefix (the removed classifier) are skipped; any other
    missing, unexpected or mis-shaped key is an error naming the file and the keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailableError(f"weights file {path} for {model} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read weights file {path} (a .pth state dict or .safetensors file is expected): {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"weights file {path} does not hold a state dict (a mapping of names to tensors)")
    expected = module.state_dict()
    prefixes = tuple(p.rstrip(".") + "." for p in ignore)
    state = {k: v for k, v in state.items() if not (k.startswith(prefixes) and k not in expected)}
    problems = []
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (file {list(v.shape)}, model {list(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if keys:
            problems.append(f"{len(keys)} {label}: {_few(keys)}")
    if problems:
        raise DataError(f"weights file {path} does not fit {model}: {'; '.join(problems)}")
    module.load_state_dict(state, strict=False)


def _few(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")
