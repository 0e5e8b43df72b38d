"""The hooks a finetuner plugin implements.

A plugin is a module (or package) exposed in the ``finetuner`` entry-point group::

    # pyproject.toml of your plugin
    [project.entry-points.finetuner]
    mymodels = "my_package.plugin"

    # my_package/plugin.py
    import finetuner

    @finetuner.hookimpl
    def finetuner_register_backbones(register):
        register(finetuner.BackboneSpec(
            name="my-encoder",
            task="text-to-text",
            output_dim=384,
            architecture="transformer",
            description="My in-house encoder",
            build="my_package.build:build_encoder",  # imported only when built
        ))

``finetuner models`` then lists ``my-encoder`` and ``finetuner.build_model("my-encoder")``
imports ``my_package.build`` and calls ``build_encoder(pretrained=True, **options)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from finetuner.registry import BackboneSpec

PROJECT = "finetuner"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def finetuner_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """Register this plugin's backbones: call ``register(BackboneSpec(...))`` once per model.

    Keep it cheap: build nothing and import no deep-learning library here; the spec's
    ``build`` is called only when a user builds the model.
    """


@hookspec(firstresult=True)
def finetuner_resolve_backbone(name: str, local_dir: str | None) -> BackboneSpec | None:
    """Return a spec for a name that was not registered up front, or None.

    For open families such as ``timm/<any timm model>`` or ``hf:<model id or folder>``.
    Return None for names that are not yours; raise :class:`finetuner.UnknownNameError`
    for a name in your family that does not exist. ``local_dir`` is set when a saved
    artifact is loaded: the folder its tower's ``save_files`` wrote, to read the model's
    description from when the original source is gone (an implementation may omit the
    argument).
    """
