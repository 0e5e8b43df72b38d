"""sentence-transformers' Dense and Normalize modules: built from a folder's files, and written back as that library reads them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from finetuner_text.sources import fetch_file
from finetuner_text.st_layout import MODULES_FILE, Module

ST_DENSE_ACTIVATION = "torch.nn.modules.activation.Tanh"  # sentence-transformers' default when a config names none
DENSE_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
ST_MODULES = "sentence_transformers.models"  # the classic module paths, which every sentence-transformers version loads


def class_path(module: nn.Module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def activation(path: str, where: str) -> nn.Module:
    """The ``torch.nn`` activation module a Dense config names by class path (``torch.nn.modules.activation.Tanh``)."""
    kind = getattr(nn, path.rsplit(".", 1)[-1], None)
    if not (isinstance(kind, type) and issubclass(kind, nn.Module) and f"{kind.__module__}.{kind.__qualname__}" == path):
        raise ValueError(f"{where}: activation_function {path!r} is not a torch.nn module finetuner can build")
    try:
        return kind()
    except TypeError as exc:
        raise ValueError(f"{where}: activation_function {path!r} needs arguments: {exc}") from exc


class Dense(nn.Module):
    """``activation(linear(x))``, as sentence-transformers' Dense computes it."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation_function: nn.Module | None = None):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation_function = activation_function if activation_function is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation_function(self.linear(x))


class Normalize(nn.Module):
    """L2 normalisation of each embedding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


def build(source: str, module: Module, pretrained: bool) -> nn.Module:
    """The module ``module`` describes; a Dense module gets the folder's weights when ``pretrained``."""
    if module.kind == "Normalize":
        return Normalize()
    where = f"{module.path}/config.json of {source}"
    config = module.config
    try:
        dense = Dense(
            int(config["in_features"]),
            int(config["out_features"]),
            bias=bool(config.get("bias", True)),
            activation_function=activation(config.get("activation_function") or ST_DENSE_ACTIVATION, where),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where} describes no Dense module finetuner can build: {exc}") from exc
    if pretrained:
        dense.linear.load_state_dict(_dense_weights(source, module.path), strict=True)
    return dense


def _dense_weights(source: str, path: str) -> dict[str, torch.Tensor]:
    """A Dense module's ``linear.*`` tensors, from its safetensors file (or a weights-only torch file)."""
    for name in DENSE_WEIGHTS:
        found = fetch_file(source, f"{path}/{name}")
        if found is None:
            continue
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            weights = load_file(str(found))
        else:
            weights = torch.load(found, map_location="cpu", weights_only=True)
        return {key.removeprefix("linear."): value for key, value in weights.items()}
    raise ValueError(f"the Dense module {path} of {source} has no weights ({' or '.join(DENSE_WEIGHTS)})")


def write(modules: nn.Sequential, directory: Path, first_index: int, weights: bool) -> list[tuple[str, str]]:
    """Write ``modules`` as sentence-transformers module folders numbered from ``first_index``; returns (path, type) each.

    A Dense folder holds its config and, with ``weights``, its ``linear.*`` tensors (an artifact keeps them in its own weights file).
    """
    written = []
    for index, module in enumerate(modules, start=first_index):
        kind = type(module).__name__
        path = f"{index}_{kind}"
        (directory / path).mkdir(parents=True, exist_ok=True)
        config = {}
        if isinstance(module, Dense):
            linear = module.linear
            config = {
                "in_features": linear.in_features,
                "out_features": linear.out_features,
                "bias": linear.bias is not None,
                "activation_function": class_path(module.activation_function),
            }
            if weights:
                from safetensors.torch import save_file

                tensors = {f"linear.{name}": value.detach().cpu().contiguous() for name, value in linear.state_dict().items()}
                save_file(tensors, str(directory / path / DENSE_WEIGHTS[0]), metadata={"format": "pt"})
        (directory / path / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        written.append((path, kind))
    return written


def write_modules_file(directory: Path, modules: list[tuple[str, str]]) -> None:
    """sentence-transformers' ``modules.json`` for (path, class name) pairs, in order."""
    entries = [{"idx": i, "name": str(i), "path": path, "type": f"{ST_MODULES}.{kind}"} for i, (path, kind) in enumerate(modules)]
    (directory / MODULES_FILE).write_text(json.dumps(entries, indent=2) + "\n")
