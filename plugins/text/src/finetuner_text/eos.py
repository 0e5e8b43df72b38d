"""EOS for last-token pooling: whether the tower appends it, and a copy of the tokenizer that appends it itself.

Decoder embedders (Qwen3-Embedding, gte-Qwen2, e5-mistral) embed the EOS token's state. Where the
tokenizer does not end texts with EOS, the tower appends it (:func:`needs_eos`); a
sentence-transformers export then holds a tokenizer whose post-processor appends it
(:func:`save_appending_eos`), so that library gives the same embeddings with no finetuner import.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from finetuner import ExportError

PROBES = ["", "a", "hello world"]  # texts the saved tokenizer must split as the tower does


def needs_eos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether last-token pooling appends EOS to every text: the tokenizer has an EOS token but does not add it itself.

    Encoder tokenizers either have no EOS token (BERT) or end every text with it already (RoBERTa, T5).
    """
    eos = tokenizer.eos_token_id
    return eos is not None and tokenizer("a", return_attention_mask=False)["input_ids"][-1:] != [eos]


def with_eos(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """A copy of a fast ``tokenizer`` whose post-processor also appends EOS (after any BOS or other tokens it adds).

    Where the tokenizer's class has an ``add_eos_token`` property, the copy's init arguments set it too:
    transformers 4 rebuilds a Llama tokenizer's post-processor from them when loading it.
    """
    result = copy.deepcopy(tokenizer)
    if not result.is_fast:
        return result
    from tokenizers import Tokenizer

    state = json.loads(result.backend_tokenizer.to_str())
    state["post_processor"] = _appending(state["post_processor"], result.eos_token, result.eos_token_id)
    result.backend_tokenizer.post_processor = Tokenizer.from_str(json.dumps(state)).post_processor
    if isinstance(getattr(type(result), "add_eos_token", None), property):
        result.init_kwargs["add_eos_token"] = True
    return result


def save_appending_eos(
    tokenizer: PreTrainedTokenizerBase, directory: Path, max_length: int, token_ids: Callable[[list[str]], list[list[int]]]
) -> None:
    """Save :func:`with_eos` of ``tokenizer`` in ``directory`` and check that, loaded back, it gives ``token_ids``.

    Raises :class:`finetuner.ExportError` when it does not (a slow tokenizer, a post-processor rebuilt on loading).
    """
    with_eos(tokenizer).save_pretrained(directory)
    saved = AutoTokenizer.from_pretrained(directory)
    probes = [*PROBES, "a " * max_length]
    if saved(probes, truncation=True, max_length=max_length)["input_ids"] != token_ids(probes):
        raise ExportError(
            f"finetuner appends EOS to each text for last-token pooling, but the tokenizer of {tokenizer.name_or_path} "
            f"({type(tokenizer).__name__}) could not be saved to append EOS itself, so sentence-transformers would embed "
            "other tokens. Export to ONNX (finetuner export --onnx), or use a tokenizer that adds EOS"
        )


def _appending(processor: dict[str, Any] | None, eos: str, eos_id: int) -> dict[str, Any]:
    """The JSON of a post-processor that runs ``processor`` and ends its output with ``eos``."""
    if processor is None:
        return _template_with_eos(None, eos, eos_id)
    if processor["type"] == "TemplateProcessing":
        return _template_with_eos(processor, eos, eos_id)
    parts = processor["processors"] if processor["type"] == "Sequence" else [processor]
    templates = [n for n, part in enumerate(parts) if part["type"] == "TemplateProcessing"]
    if templates:
        parts = [*parts[: templates[-1]], _template_with_eos(parts[templates[-1]], eos, eos_id), *parts[templates[-1] + 1 :]]
    else:
        parts = [*parts, _template_with_eos(None, eos, eos_id)]
    return {"type": "Sequence", "processors": parts}


def _template_with_eos(template: dict[str, Any] | None, eos: str, eos_id: int) -> dict[str, Any]:
    """A TemplateProcessing's JSON (by default the identity) with ``eos`` appended to its single and pair templates."""
    template = copy.deepcopy(template) or {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {},
    }
    template["single"].append({"SpecialToken": {"id": eos, "type_id": 0}})
    template["pair"].append({"SpecialToken": {"id": eos, "type_id": 1}})
    template["special_tokens"].setdefault(eos, {"id": eos, "ids": [eos_id], "tokens": [eos]})
    return template
