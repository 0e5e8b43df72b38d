"""The Hugging Face text tower: tokenizer + transformer encoder + attention-mask-aware pooling."""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from finetuner import DataError
from finetuner.models import TOKEN_POOLINGS, TokenPooling, Tower
from finetuner_text.sources import embedding_dim, local_folder, not_available, read_json

DEFAULT_MAX_LENGTH = 256
POOLING_FILE = "1_Pooling/config.json"
ST_CONFIG_FILE = "sentence_bert_config.json"
# sentence-transformers' (pre-5) pooling flags and the mode each one means here; other modes are unsupported.
ST_POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}
# Attention kernels for batches padded to their longest text, on CUDA: all but cuDNN's, which builds a plan for
# each new shape (slow for each new one: bench/runs/gpu-h100-2026-11-27) and so starves the GPU here.
VARYING_LENGTH_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
SORT_WINDOW_BATCHES = 64  # inference batches tokenized and sorted by length together


def _check_strings(items: Sequence[Any], first: int = 0) -> None:
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise DataError(f"text item {first + index} is {type(item).__name__} {item!r:.60}, not a string")


class HFTextTower(Tower):
    """Strings in, pooled token states out; batches are padded to their longest text only.

    The bf16 inference copy runs with autocast off: its quality was checked that way (bench/README.md).
    """

    modality = "text"
    bf16_autocast = False
    export_formats = ("sentence-transformers",)

    def __init__(self, encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pooling: str, max_length: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.pooling = TokenPooling(pooling)
        self.max_length = max_length
        self.output_dim = embedding_dim(encoder.config.to_dict(), f"the config of {encoder.config.name_or_path}")

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        _check_strings(items)
        tokens = self.tokenizer(
            list(items),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def batches(self, items: Sequence[Any], batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """Inference batches of texts with similar token counts, each text tokenized once.

        Texts are tokenized a window of ``SORT_WINDOW_BATCHES`` batches at a time (memory stays
        bounded), sorted by token count within the window, and padded per batch to its longest.
        """
        window = batch_size * SORT_WINDOW_BATCHES
        for begin in range(0, len(items), window):
            part = list(items[begin : begin + window])
            _check_strings(part, first=begin)
            ids = self.tokenizer(
                part, truncation=True, max_length=self.max_length, return_attention_mask=False, return_token_type_ids=False
            )["input_ids"]
            order = sorted(range(len(part)), key=lambda i: -len(ids[i]))
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                yield [begin + i for i in chunk], self._pad([ids[i] for i in chunk])

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
        return self.pooling(hidden, mask)

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
        """Tokenizer files, config.json and sentence-transformers pooling/length configs."""
        directory = Path(directory)
        self.tokenizer.save_pretrained(directory)
        self.encoder.config.save_pretrained(directory)
        flags = {flag: mode == self.pooling.mode for flag, mode in ST_POOLING_FLAGS.items()}
        (directory / POOLING_FILE).parent.mkdir(parents=True, exist_ok=True)
        (directory / POOLING_FILE).write_text(json.dumps({"word_embedding_dimension": self.output_dim, **flags}, indent=2))
        st_config: dict[str, Any] = {"max_seq_length": self.max_length}
        if getattr(self.encoder, "pooler", False) is None:  # dropped (without_pooler): sentence-transformers leaves it out too
            st_config["model_args"] = {"add_pooling_layer": False}
        (directory / ST_CONFIG_FILE).write_text(json.dumps(st_config, indent=2))

    def export_files(self, directory: Path, fmt: str) -> dict[str, torch.Tensor]:
        """sentence-transformers' transformer module (these files at the folder root) and ``1_Pooling``; the encoder's weights.

        An encoder whose pooling layer :func:`without_pooler` dropped is loaded without one there too
        (``model_args``), so transformers reports no missing weights.
        """
        self.save_files(directory)
        if getattr(self.encoder, "pooler", False) is None:
            config = json.loads((directory / ST_CONFIG_FILE).read_text())
            config["model_args"] = {"add_pooling_layer": False}
            (directory / ST_CONFIG_FILE).write_text(json.dumps(config, indent=2))
        return dict(self.encoder.state_dict())


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
    tower = HFTextTower(
        without_pooler(encoder),
        tokenizer,
        pooling=pooling or default_pooling(source),
        max_length=check_max_length(max_length, source, encoder, tokenizer),
    )
    tower.base_model = source if pretrained and local_folder(source) is None else None
    return tower


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


def default_pooling(source: str) -> str:
    """The pooling a sentence-transformers folder asks for (``1_Pooling/config.json``), else mean."""
    config = read_json(source, POOLING_FILE, download=True)
    if config is None:
        return "mean"
    if "pooling_mode" in config:  # sentence-transformers 5+ name the mode(s)
        named = config["pooling_mode"]
        modes = list(named) if isinstance(named, (list, tuple)) else [named]
    else:  # older ones set one boolean flag per mode
        modes = [ST_POOLING_FLAGS.get(k, k) for k, v in config.items() if k.startswith("pooling_mode_") and v]
    if len(modes) != 1 or modes[0] not in TOKEN_POOLINGS:
        raise ValueError(
            f"{POOLING_FILE} of {source} asks for pooling {modes}; finetuner supports one of {TOKEN_POOLINGS}: pass pooling="
        )
    return modes[0]


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
