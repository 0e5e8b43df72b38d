"""Backbone specs and lookup by name or alias. Reads specs only: imports no torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finetuner.errors import PluginError, UnknownNameError

TASKS = ("text-to-text", "image-to-image", "text-to-image")
INSTALL_HINT = "Install backbones with: pip install finetuner-vision finetuner-text finetuner-multimodal"


@dataclass(frozen=True)
class BackboneSpec:
    """Cheap metadata about one backbone plus a lazy builder.

    ``build`` is a callable or a ``"module:function"`` string; it is called as
    ``build(pretrained=True, **options)`` and returns a :class:`finetuner.models.Tower`
    (one encoder) or an :class:`finetuner.EmbeddingModel` (several towers).
    """

    name: str
    task: str
    output_dim: int
    architecture: str
    description: str
    build: Callable[..., Any] | str
    aliases: tuple[str, ...] = ()
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UnknownNameError("task", self.task, TASKS, hint=f"(in the spec of {self.name!r})")
        if not isinstance(self.output_dim, int) or self.output_dim <= 0:
            raise ValueError(f"output_dim of {self.name!r} must be a positive int, got {self.output_dim!r}")
        object.__setattr__(self, "aliases", tuple(self.aliases))

    def builder(self) -> Callable[..., Any]:
        """The build function, imported now if it was given as ``"module:function"``."""
        if callable(self.build):
            return self.build
        module_name, _, attribute = self.build.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def row(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "task": self.task,
            "output_dim": self.output_dim,
            "architecture": self.architecture,
            "description": self.description,
        }


class Registry:
    """All specs from all plugins, keyed by name and alias."""

    def __init__(self) -> None:
        self._specs: dict[str, BackboneSpec] = {}
        self._names: dict[str, str] = {}  # name or alias -> canonical name

    def add(self, spec: BackboneSpec) -> None:
        for key in (spec.name, *spec.aliases):
            if key in self._names:
                other = self._specs[self._names[key]]
                raise PluginError(
                    f"model name {key!r} is registered by two plugins: "
                    f"{other.plugin!r} ({other.name}) and {spec.plugin!r} ({spec.name})"
                )
        self._specs[spec.name] = spec
        for key in (spec.name, *spec.aliases):
            self._names[key] = spec.name

    def remove_plugin(self, plugin: str) -> None:
        dropped = {n for n, s in self._specs.items() if s.plugin == plugin}
        self._specs = {n: s for n, s in self._specs.items() if n not in dropped}
        self._names = {k: n for k, n in self._names.items() if n not in dropped}

    def get(self, name: str) -> BackboneSpec | None:
        canonical = self._names.get(name)
        return self._specs[canonical] if canonical else None

    def specs(self) -> list[BackboneSpec]:
        return list(self._specs.values())

    def names(self) -> list[str]:
        return list(self._names)


def list_models(task: str | None = None) -> list[BackboneSpec]:
    """The specs of every installed backbone, optionally of one task."""
    from finetuner.plugins import get_manager

    if task is not None and task not in TASKS:
        raise UnknownNameError("task", task, TASKS)
    return [s for s in get_manager().registry.specs() if task is None or s.task == task]


def get_spec(name: str, local_dir: str | None = None) -> BackboneSpec:
    """Resolve a model name or alias (or an open family such as ``timm/...``) to its spec.

    ``local_dir`` is a saved artifact's folder for this backbone (see ``finetuner_resolve_backbone``).
    """
    from finetuner.plugins import get_manager

    manager = get_manager()
    spec = manager.registry.get(name) or manager.resolve(name, local_dir)
    if spec is None:
        raise UnknownNameError(
            "model",
            name,
            manager.registry.names(),
            hint=INSTALL_HINT if not manager.registry.specs() else "Run `finetuner models` to see them all.",
        )
    return spec
