"""finetuner-text: text backbones for finetuner (BERT, sentence-transformers, any Hugging Face encoder).

The hooks are in :mod:`finetuner_text.plugin`. Besides the registered models,
``hf:<model id or folder>`` builds any Hugging Face encoder (``hf:bert-base-uncased``,
``hf:/models/my-encoder``). Third-party plugins reuse the builder through :func:`build_hf`;
this module imports no torch or transformers until it is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from finetuner_text.sources import cached_file, hub_offline, local_folder, not_available

if TYPE_CHECKING:
    from finetuner.models import Tower

__version__ = "0.1.0"


def build_hf(
    path_or_id: str | Path,
    pretrained: bool = True,
    local_dir: str | Path | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
) -> Tower:
    """Build a text tower from a Hugging Face model id or a local folder.

    ``pretrained=True`` loads its weights; ``False`` gives random weights (the config and
    tokenizer files are still read). ``pooling`` is ``"mean"``, ``"cls"``, ``"max"`` or ``"last"``
    (the last token's state, EOS appended where the tokenizer does not add it: decoder embedders;
    default: the folder's sentence-transformers ``1_Pooling/config.json``, else mean); ``max_length`` caps
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
