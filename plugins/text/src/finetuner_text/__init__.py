"""finetuner-text: text backbones for finetuner (BERT, sentence-transformers, any Hugging Face encoder).

This module holds the plugin's hooks and imports no torch/transformers: the builder in
:mod:`finetuner_text.hf` is imported only when a model is built. Besides the registered
models, ``hf:<model id or folder>`` builds any Hugging Face encoder (``hf:bert-base-uncased``,
``hf:/models/my-encoder``). Third-party plugins reuse the builder through :func:`build_hf`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import finetuner
from finetuner_text.sources import cached_file, embedding_dim, hub_offline, local_folder, not_available, read_json

__version__ = "0.1.0"
HF_PREFIX = "hf:"

MODELS = (
    ("bert-base-cased", 768, "Pretrained on BookCorpus and English Wikipedia"),
    ("sentence-transformers/msmarco-distilbert-base-v3", 768, "Pretrained on BERT, fine-tuned on MS Marco"),
)


def build_hf(
    path_or_id: str | Path,
    pretrained: bool = True,
    local_dir: str | Path | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
) -> finetuner.Tower:
    """Build a text tower from a Hugging Face model id or a local folder.

    ``pretrained=True`` loads its weights; ``False`` gives random weights (the config and
    tokenizer files are still read). ``pooling`` is ``"mean"``, ``"cls"`` or ``"max"`` (default:
    the folder's sentence-transformers ``1_Pooling/config.json``, else mean); ``max_length`` caps
    tokens per text (default: its ``sentence_bert_config.json``, else 256). ``local_dir``, a
    folder the tower's ``save_files`` wrote, replaces ``path_or_id`` as the source of all files
    (``finetuner.load`` passes it with ``pretrained=False``). Offline, a model that is neither a
    folder nor in the Hugging Face cache raises :class:`finetuner.ModelNotAvailableError`.
    """
    source = str(local_dir if local_dir is not None else path_or_id)
    if local_folder(source) is None and (hub_offline() or local_dir is not None) and cached_file(source, "config.json") is None:
        raise not_available(source)  # at once, before importing transformers
    from finetuner_text.hf import build_tower

    return build_tower(source, pretrained=pretrained, pooling=pooling, max_length=max_length)


@finetuner.hookimpl
def finetuner_register_backbones(register: Any) -> None:
    for name, dim, description in MODELS:
        register(
            finetuner.BackboneSpec(
                name=name,
                task="text-to-text",
                output_dim=dim,
                architecture="transformer",
                description=description,
                build=partial(build_hf, name),
            )
        )


@finetuner.hookimpl
def finetuner_resolve_backbone(name: str, local_dir: str | None) -> finetuner.BackboneSpec | None:
    """``hf:<model id or folder>``: any Hugging Face encoder whose config is on disk (or downloadable online).

    A saved artifact's ``local_dir`` holds the config too, so it loads when the source is gone.
    """
    if not name.startswith(HF_PREFIX):
        return None
    source = name[len(HF_PREFIX) :]
    if not source:
        raise finetuner.UnknownNameError("model", name, ["hf:<model id or folder>"])
    config = read_json(local_dir, "config.json") if local_dir is not None else None
    config = config or read_json(source, "config.json", download=True)
    if config is None:
        raise not_available(source)
    return finetuner.BackboneSpec(
        name=name,
        task="text-to-text",
        output_dim=embedding_dim(config, f"config.json of {source}"),
        architecture="transformer",
        description=f"Hugging Face {config.get('model_type', 'transformer')} model {source}",
        build=partial(build_hf, source),
    )
