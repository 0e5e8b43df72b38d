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

    ``build`` is a callable or a ``"module:function"`` string, imported when the model is
    built; how it is called and what it returns is the builder contract in
    :mod:`finetuner.hookspecs`.
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
    """All specs from all plugins, keyed by name and alias.

    A name or alias that two plugins register is held by neither: looking it up raises a
    :class:`PluginError` naming both, whatever order the plugins loaded in, so an artifact
    never silently goes to the wrong plugin. Their other names keep working.
    """

    def __init__(self) -> None:
        self._claims: dict[str, list[BackboneSpec]] = {}  # name or alias -> every spec claiming it

    def add(self, spec: BackboneSpec) -> list[str]:
        """Add ``spec``; return the names it now contests with another plugin's spec."""
        keys = (spec.name, *spec.aliases)
        for key in keys:
            if any(other.plugin == spec.plugin for other in self._claims.get(key, ())):
                raise PluginError(f"plugin {spec.plugin!r} registers the model name {key!r} twice")
        contested = [key for key in keys if key in self._claims]
        for key in keys:
            self._claims.setdefault(key, []).append(spec)
        return contested

    def remove_plugin(self, plugin: str) -> None:
        claims = {key: [s for s in specs if s.plugin != plugin] for key, specs in self._claims.items()}
        self._claims = {key: specs for key, specs in claims.items() if specs}

    def get(self, name: str) -> BackboneSpec | None:
        claims = self._claims.get(name)
        if not claims:
            return None
        if len(claims) > 1:
            raise PluginError(contest_message(name, claims))
        return claims[0]

    def contested(self) -> dict[str, list[BackboneSpec]]:
        """Every name two or more plugins registered, with the specs claiming it."""
        return {key: specs for key, specs in self._claims.items() if len(specs) > 1}

    def specs(self) -> list[BackboneSpec]:
        """The specs whose name belongs to one plugin, in registration order."""
        return [specs[0] for key, specs in self._claims.items() if len(specs) == 1 and specs[0].name == key]

    def names(self) -> list[str]:
        return [key for key, specs in self._claims.items() if len(specs) == 1]


def contest_message(name: str, claims: list[BackboneSpec]) -> str:
    plugins = " and ".join(f"{s.plugin!r} ({s.name})" for s in claims)
    count = "two" if len(claims) == 2 else str(len(claims))
    return (
        f"model name {name!r} is registered by {count} plugins: {plugins}; none of them is used for it. "
        f"Uninstall one, or set FINETUNER_DISABLE_PLUGINS to the one you do not want."
    )


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
