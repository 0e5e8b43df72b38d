"""Plugin manager: discovers plugins in the ``finetuner`` entry-point group, one at a time.

A plugin whose import or hook raises is skipped with a warning and shown as failed in
``finetuner plugins``; set ``FINETUNER_STRICT_PLUGINS=1`` to raise instead.
``FINETUNER_DISABLE_PLUGINS=a,b`` skips the named plugins.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

import pluggy

from finetuner import hookspecs
from finetuner.errors import PluginError
from finetuner.registry import BackboneSpec, Registry, contest_message

ENTRY_POINT_GROUP = "finetuner"


@dataclass
class PluginInfo:
    name: str
    version: str
    status: str  # "ok", "failed" or "disabled"
    models: int = 0
    error: str = ""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get("FINETUNER_DISABLE_PLUGINS", "").split(",") if n.strip()}


class PluginManager:
    """Loads plugins and collects their backbone specs into a :class:`Registry`."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}

    def load_entry_points(self) -> None:
        disabled = _disabled()
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            version = ep.dist.version if ep.dist else ""
            if ep.name in disabled:
                self.plugins[ep.name] = PluginInfo(ep.name, version, "disabled")
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self._fail(ep.name, version, exc, "import")
                continue
            self.register(module, ep.name, version)

    def register(self, plugin: ModuleType | object, name: str, version: str = "") -> None:
        """Register a plugin object (a module or any object with hookimpls) and its specs."""
        if name in _disabled():
            self.plugins[name] = PluginInfo(name, version, "disabled")
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(name, version, exc, "registration")
            return
        count = 0
        contested: list[str] = []

        def register_spec(spec: BackboneSpec) -> None:
            nonlocal count
            if not isinstance(spec, BackboneSpec):
                raise TypeError(f"register() takes a finetuner.BackboneSpec, got {type(spec).__name__}")
            contested.extend(self.registry.add(_with_plugin(spec, name)))
            count += 1

        try:
            for impl in self.pm.hook.finetuner_register_backbones.get_hookimpls():
                if impl.plugin_name == name:
                    impl.function(register=register_spec)
        except Exception as exc:
            self.registry.remove_plugin(name)
            self.pm.unregister(name=name)
            self._fail(name, version, exc, "finetuner_register_backbones hook")
            return
        self.plugins[name] = PluginInfo(name, version, "ok", count)
        for key in contested:
            self._contest(key)

    def _contest(self, key: str) -> None:
        """Report a name several plugins registered: a warning (an error in strict mode); each row says so."""
        claims = self.registry.contested()[key]
        message = contest_message(key, claims)
        for spec in claims:
            info = self.plugins.get(spec.plugin)
            if info is not None:
                others = ", ".join(repr(s.plugin) for s in claims if s.plugin != spec.plugin)
                info.error = "; ".join(filter(None, [info.error, f"model name {key!r} is also registered by {others}"]))
        if _env_flag("FINETUNER_STRICT_PLUGINS"):
            raise PluginError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)

    def resolve(self, name: str, local_dir: str | None = None) -> BackboneSpec | None:
        """Ask plugins with a resolver hook about a name nobody registered."""
        arguments = {"name": name, "local_dir": local_dir}
        for impl in reversed(self.pm.hook.finetuner_resolve_backbone.get_hookimpls()):
            spec = impl.function(**{k: arguments[k] for k in impl.argnames})
            if spec is not None:
                return _with_plugin(spec, impl.plugin_name)
        return None

    def _fail(self, name: str, version: str, exc: Exception, stage: str) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if _env_flag("FINETUNER_STRICT_PLUGINS"):
            raise PluginError(f"plugin {name!r} failed in {stage}: {error}") from exc
        warnings.warn(f"finetuner plugin {name!r} skipped ({stage} failed): {error}", RuntimeWarning, stacklevel=3)
        self.plugins[name] = PluginInfo(name, version, "failed", 0, error)


def _with_plugin(spec: BackboneSpec, plugin: str) -> BackboneSpec:
    if spec.plugin == plugin:
        return spec
    import dataclasses

    return dataclasses.replace(spec, plugin=plugin)


_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager, loading the installed plugins on first use."""
    global _manager
    if _manager is None:
        manager = PluginManager()
        manager.load_entry_points()
        _manager = manager
    return _manager


def reset() -> None:
    """Forget loaded plugins; the next lookup discovers them again (for tests)."""
    global _manager
    _manager = None


def register_plugin(plugin: Any, name: str) -> None:
    """Register a plugin in this process without an entry point (scripts, notebooks, tests)."""
    get_manager().register(plugin, name)


def plugin_infos() -> list[PluginInfo]:
    return list(get_manager().plugins.values())
