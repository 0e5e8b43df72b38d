"""The hooks a finetuner plugin implements, and the contract of the builders it registers.

Writing a plugin
----------------

A plugin is a module exposed in the ``finetuner`` entry-point group; finetuner's own
plugins keep their hooks in ``plugin.py``::

    # pyproject.toml of your distribution
    [project.entry-points.finetuner]
    mymodels = "my_package.plugin"

    # my_package/plugin.py: imports only finetuner, so listing models stays fast
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

``finetuner models`` then lists ``my-encoder``; ``finetuner.build_model("my-encoder")``
imports ``my_package.build`` and calls ``build_encoder`` as the builder contract below says.
``examples/tower-from-scratch`` in the repository is a complete plugin that writes its tower.

The builder contract
--------------------

A spec's ``build`` (a callable, or a ``"module:function"`` string imported when the model is
built) is called as::

    build(pretrained=True, local_dir=None, **options)

- ``pretrained``: True loads the pretrained weights, from a cache or downloaded; offline,
  raise :class:`finetuner.ModelNotAvailableError` when they are missing. False builds random
  weights of the same architecture with no network access and no weights download, from
  files on disk only (``local_dir``, a cache, or known hyperparameters).
- ``local_dir``: None, or, when :func:`finetuner.load` rebuilds a saved model, the artifact's
  copy of the files the tower's ``save_files`` wrote (tokenizer, config, preprocessing). It
  then comes with ``pretrained=False``, and the model must rebuild from it alone: the
  original source may be gone. Accept the argument even if your towers write no files.
- ``**options``: the user's build options (``build_model(name, pooling="cls")``,
  ``fit(..., model_options=...)``). Saved models record them, all but ``weights`` (a weights
  file the artifact's own weights replace), and pass them again on load, so they must be
  JSON-serialisable. Declare them as named parameters: a misspelt option is then refused
  with the valid names, and a two-tower model routes each option to the tower that takes it.

It returns a :class:`finetuner.models.Tower` (one encoder: ``text-to-text``,
``image-to-image``) or a :class:`finetuner.models.EmbeddingModel` of a text and an image
tower (``text-to-image``), whose towers' ``output_dim`` is the spec's. A
:class:`finetuner.FinetunerError` it raises reaches the user as it is; any other exception
becomes a :class:`finetuner.PluginError` naming the plugin.

A tower implements ``preprocess`` and ``forward``, and calls its encoder through
``Tower.run_encoder`` for fast bf16 inference (see :class:`finetuner.models.Tower`). Optionally
it names the Hub id its weights came from (``base_model``, for model cards) and writes itself in
other libraries' formats (``export_formats`` and ``export_files``: see :mod:`finetuner.ecosystem`), and
randomly transforms its inputs while training (``augmentation``, what ``fit(augment=...)`` switches on).
A tower whose architecture :mod:`finetuner.lora` does not know names the linear layers
``fit(lora=True)`` adapts (``lora_targets``).
Plugins import only :mod:`finetuner` and :mod:`finetuner.models`; other modules are internal.
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
    ``build`` is called only when a user builds the model (see the builder contract above).
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
