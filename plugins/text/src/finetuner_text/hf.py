"""The Hugging Face text tower: tokenizer + transformer encoder + attention-mask-aware pooling."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from finetuner import DataError, FinetunerError
from finetuner.models import TokenPooling, Tower
from finetuner_text import st_modules
from finetuner_text.eos import needs_eos, save_appending_eos
from finetuner_text.sources import embedding_dim, local_folder, not_available, read_json
from finetuner_text.st_layout import POOLING_FLAGS, POOLING_PATH, ST_MODEL_FILE, read_layout

DEFAULT_MAX_LENGTH = 256
POOLING_FILE = f"{POOLING_PATH}/config.json"
ST_CONFIG_FILE = "sentence_bert_config.json"
# Attention kernels for batches padded to their longest text, on CUDA: all but cuDNN's, which builds a plan for
# each new shape (slow for each new one: bench/runs/gpu-h100-2026-11-27) and so starves the GPU here.
VARYING_LENGTH_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
SORT_WINDOW_BATCHES = 64  # inference batches tokenized and sorted by length together

logger = logging.getLogger("finetuner")


def _check_strings(items: Sequence[Any], first: int = 0) -> None:
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise DataError(f"text item {first + index} is {type(item).__name__} {item!r:.60}, not a string")


class HFTextTower(Tower):
    """Strings in, pooled token states (then any Dense and Normalize modules) out; batches are padded to their longest text only.

    ``after_pooling`` holds the Dense and Normalize modules a sentence-transformers folder lists after
    its Pooling; ``prompts``, ``default_prompt_name`` and ``similarity_fn_name`` are what its
    ``config_sentence_transformers.json`` says (see :mod:`finetuner.prompts`).

    The bf16 inference copy runs with autocast off: its quality was checked that way (bench/README.md).
    """

    modality = "text"
    bf16_autocast = False
    export_formats = ("sentence-transformers",)

    def __init__(
        self,
        encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pooling: str,
        max_length: int,
        after_pooling: Sequence[nn.Module] = (),
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = with_pad_token(tokenizer)
        self.pooling = TokenPooling(pooling)
        self.max_length = max_length
        self.append_eos = pooling == "last" and needs_eos(tokenizer)
        self.after_pooling = nn.Sequential(*after_pooling)
        dense = [m.linear.out_features for m in self.after_pooling if isinstance(m, st_modules.Dense)]
        self.output_dim = (
            dense[-1] if dense else embedding_dim(encoder.config.to_dict(), f"the config of {encoder.config.name_or_path}")
        )
        self.prompts: dict[str, str] = {}
        self.default_prompt_name: str | None = None
        self.similarity_fn_name = "cosine"

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        _check_strings(items)
        return self._pad(self._token_ids(list(items)))

    def batches(self, items: Sequence[Any], batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Inference batches of texts with similar token counts, each text tokenized once.

        Texts are tokenized a window of ``SORT_WINDOW_BATCHES`` batches at a time (memory stays
        bounded), sorted by token count within the window, and padded per batch to its longest.
        """
        window = batch_size * SORT_WINDOW_BATCHES
        for begin in range(0, len(items), window):
            part = list(items[begin : begin + window])
            _check_strings(part, first=begin)
            ids = self._token_ids(part)
            order = sorted(range(len(part)), key=lambda i: -len(ids[i]))
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                yield [begin + i for i in chunk], self._pad([ids[i] for i in chunk])

    def _token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids within ``max_length``, ending with EOS when ``append_eos`` (see :func:`needs_eos`)."""
        ids = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, return_attention_mask=False, return_token_type_ids=False
        )["input_ids"]
        if self.append_eos:
            return [[*row[: self.max_length - 1], self.tokenizer.eos_token_id] for row in ids]
        return ids

    def _pad(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        """``input_ids``/``attention_mask`` for token rows, padded as the tokenizer pads (its side and pad id).

        ``tokenizer.pad`` gives the same tensors, several times slower and with a warning for fast tokenizers.
        """
        longest = max(len(row) for row in rows)
        input_ids = np.full((len(rows), longest), self.tokenizer.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        left = self.tokenizer.padding_side == "left"
        for number, row in enumerate(rows):
            span = slice(longest - len(row), longest) if left else slice(0, len(row))
            input_ids[number, span] = row
            mask[number, span] = 1
        return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = features["attention_mask"]
        device = mask.device.type
        with sdpa_kernel(VARYING_LENGTH_ATTENTION) if device == "cuda" else contextlib.nullcontext():
            hidden = self.run_encoder(self.encoder, input_ids=features["input_ids"], attention_mask=mask).last_hidden_state
        return self.after_pooling(self.pooling(hidden, mask))

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """transformers' checkpointing of the encoder's layers (non-reentrant: it also works with frozen embeddings)."""
        encoder = self.encoder
        if enabled and not encoder.supports_gradient_checkpointing:
            super().set_gradient_checkpointing(enabled)  # refuses, naming the tower
        options = {"use_reentrant": False}
        if hasattr(encoder, "activation_checkpointing_enable"):  # transformers 5; 4 spells it gradient_checkpointing_*
            encoder.activation_checkpointing_enable(options) if enabled else encoder.activation_checkpointing_disable()
        elif enabled:
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        else:
            encoder.gradient_checkpointing_disable()

    def save_files(self, directory: Path) -> None:
        """Tokenizer files, config.json and the sentence-transformers module configs (the weights are the artifact's)."""
        self._write(Path(directory), weights=False)

    def export_files(self, directory: Path, fmt: str) -> dict[str, torch.Tensor]:
        """sentence-transformers' transformer module (these files at the folder root), ``1_Pooling``, the Dense modules
        with their weights and ``modules.json``; returns the encoder's weights.

        An encoder whose pooling layer :func:`without_pooler` dropped is loaded without one there too
        (``model_args``), so transformers reports no missing weights.
        """
        self._write(Path(directory), weights=True)
        return dict(self.encoder.state_dict())

    def _write(self, directory: Path, weights: bool) -> None:
        if weights and self.append_eos:  # an export: its tokenizer appends EOS itself, for libraries that load it
            save_appending_eos(self.tokenizer, directory, self.max_length, self._token_ids)
        else:
            self.tokenizer.save_pretrained(directory)
        self.encoder.config.save_pretrained(directory)
        flags = {flag: mode == self.pooling.mode for flag, mode in POOLING_FLAGS.items()}
        (directory / POOLING_FILE).parent.mkdir(parents=True, exist_ok=True)
        dim = embedding_dim(self.encoder.config.to_dict(), f"the config of {self.encoder.config.name_or_path}")
        (directory / POOLING_FILE).write_text(json.dumps({"word_embedding_dimension": dim, **flags}, indent=2))
        st_config: dict[str, Any] = {"max_seq_length": self.max_length}
        if getattr(self.encoder, "pooler", False) is None:  # dropped (without_pooler): sentence-transformers leaves it out too
            st_config["model_args"] = {"add_pooling_layer": False}
        (directory / ST_CONFIG_FILE).write_text(json.dumps(st_config, indent=2))
        after = st_modules.write(self.after_pooling, directory, first_index=2, weights=weights)
        st_modules.write_modules_file(directory, [("", "Transformer"), (POOLING_PATH, "Pooling"), *after])
        model = {
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
            "similarity_fn_name": self.similarity_fn_name,
        }
        (directory / ST_MODEL_FILE).write_text(json.dumps(model, indent=2))


def build_tower(source: str, pretrained: bool = True, pooling: str | None = None, max_length: int | None = None) -> HFTextTower:
    """The tower of a Hugging Face model id or folder (see :func:`finetuner_text.build_hf`)."""
    try:
        with _no_progress_bar():  # never run a model's own code: trust_remote_code stays off
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
            if pretrained:
                encoder = AutoModel.from_pretrained(source, dtype=torch.float32, trust_remote_code=False)
            else:
                encoder = AutoModel.from_config(AutoConfig.from_pretrained(source, trust_remote_code=False))
    except OSError as exc:
        raise not_available(source, str(exc).splitlines()[0]) from exc
    layout = read_layout(source, read_pooling=pooling is None)
    tower = HFTextTower(
        without_pooler(encoder),
        tokenizer,
        pooling=pooling or layout.pooling or "mean",
        max_length=check_max_length(max_length, source, encoder, tokenizer),
        after_pooling=[st_modules.build(source, module, pretrained) for module in layout.after_pooling],
    )
    tower.prompts, tower.default_prompt_name = layout.prompts, layout.default_prompt_name
    tower.similarity_fn_name = layout.similarity_fn_name
    tower.base_model = source if pretrained and local_folder(source) is None else None
    return tower


def with_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """``tokenizer``, padding with its EOS token where it has no pad token (Llama, Mistral); the mask hides either.

    One with neither raises :class:`finetuner.FinetunerError` naming the model.
    """
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise FinetunerError(
                f"the tokenizer of {tokenizer.name_or_path} has neither a pad token nor an EOS token to pad batches with; "
                "give it a pad token (tokenizer.pad_token = ...) and save it with the model"
            )
        logger.debug("the tokenizer of %s has no pad token: padding with its EOS token", tokenizer.name_or_path)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def without_pooler(encoder: PreTrainedModel) -> PreTrainedModel:
    """``encoder`` without the pooling layer its class adds by default (BERT's dense + tanh over ``[CLS]``).

    The tower pools token states itself, so that layer would never get a gradient, and
    DistributedDataParallel would wait for one. It is dropped after loading rather than left out
    when building (``add_pooling_layer=False``): the checkpoint then loads without an
    unexpected-keys report, and the emptied slot stays registered, so the weights of an artifact
    saved with a pooler still load. Classes that take ``add_pooling_layer`` run without one.
    """
    if getattr(encoder, "pooler", None) is not None and "add_pooling_layer" in inspect.signature(type(encoder)).parameters:
        encoder.pooler = None
    return encoder


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar while building; restore the user's setting after."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def check_max_length(max_length: int | None, source: str, encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int:
    """``max_length``, or the folder's ``sentence_bert_config.json`` value, or 256; within the model's limit."""
    limits = [getattr(encoder.config, "max_position_embeddings", None), tokenizer.model_max_length]
    limit = min((v for v in limits if isinstance(v, int) and 0 < v < 1_000_000), default=None)
    if max_length is None:
        st_config = read_json(source, ST_CONFIG_FILE, download=True) or {}
        value = int(st_config.get("max_seq_length") or DEFAULT_MAX_LENGTH)
        return min(value, limit) if limit else value
    if not isinstance(max_length, int) or max_length < 1 or (limit and max_length > limit):
        raise ValueError(f"max_length must be an int from 1 to {limit or 'the model limit'}, got {max_length!r}")
    return max_length
