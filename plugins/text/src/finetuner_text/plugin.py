"""The plugin's hooks (entry point ``text``): the registered text models and the ``hf:`` family.

Imports no torch or transformers: a spec's builder, ``finetuner_text.zoo:<model id or folder>``,
is :func:`finetuner_text.build_hf` with the source bound, imported when the model is built.
"""

from __future__ import annotations

from collections.abc import Callable

import finetuner
from finetuner_text.sources import embedding_dim, not_available, read_json
from finetuner_text.st_layout import output_dim

HF_PREFIX = "hf:"

MODELS = (
    ("bert-base-cased", 768, "Pretrained on BookCorpus and English Wikipedia"),
    ("sentence-transformers/msmarco-distilbert-base-v3", 768, "Pretrained on BERT, fine-tuned on MS Marco"),
)


def hf_builder(source: str) -> str:
    """The ``"module:function"`` builder of a Hugging Face model id or folder (see :mod:`finetuner_text.zoo`)."""
    return f"finetuner_text.zoo:{source}"


@finetuner.hookimpl
def finetuner_register_backbones(register: Callable[[finetuner.BackboneSpec], None]) -> None:
    for name, dim, description in MODELS:
        register(
            finetuner.BackboneSpec(
                name=name,
                task="text-to-text",
                output_dim=dim,
                architecture="transformer",
                description=description,
                build=hf_builder(name),
            )
        )


@finetuner.hookimpl
def finetuner_resolve_backbone(name: str, local_dir: str | None) -> finetuner.BackboneSpec | None:
    """``hf:<model id or folder>``: any Hugging Face encoder whose config is on disk (or downloadable online).

    A saved artifact's ``local_dir`` holds the config too, so it loads when the source is gone. The
    output dimension is the last sentence-transformers Dense module's, else the hidden size.
    """
    if not name.startswith(HF_PREFIX):
        return None
    source = name[len(HF_PREFIX) :]
    if not source:
        raise finetuner.UnknownNameError("model", name, ["hf:<model id or folder>"])
    config = read_json(local_dir, "config.json") if local_dir is not None else None
    folder = local_dir if config is not None else source
    config = config or read_json(source, "config.json", download=True)
    if config is None:
        raise not_available(source)
    return finetuner.BackboneSpec(
        name=name,
        task="text-to-text",
        output_dim=output_dim(folder, embedding_dim(config, f"config.json of {source}")),
        architecture="transformer",
        description=f"Hugging Face {config.get('model_type', 'transformer')} model {source}",
        build=hf_builder(source),
    )
