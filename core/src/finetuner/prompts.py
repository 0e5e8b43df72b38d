"""Prompts: named text prefixes (``{"query": "query: ", "document": "passage: "}``) put before a text tower's inputs.

A model's prompts live on its text tower (``tower.prompts`` and ``tower.default_prompt_name``; a
sentence-transformers folder's ``config_sentence_transformers.json`` sets them when it is read), so
they follow the model into its artifact and its sentence-transformers export. ``encode`` takes a
``prompt`` or a ``prompt_name``, and uses the default prompt when given neither; queries get the
``"query"`` prompt and documents the first of ``"document"``, ``"passage"`` and ``"corpus"`` (as
sentence-transformers' ``encode_document`` picks) in training and in evaluation, else the default.
Only text is prefixed; images go in as they are. Imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finetuner.errors import OptionError, UnknownNameError

QUERY = "query"
DOCUMENT_NAMES = ("document", "passage", "corpus")  # the document side's prompt: the first of these the model has


def check_prompts(prompts: Any, what: str = "prompts") -> dict[str, str]:
    """``prompts`` as a dict of prompt name to prefix; anything else raises an OptionError naming ``what``."""
    if not isinstance(prompts, dict) or not all(isinstance(k, str) and k and isinstance(v, str) for k, v in prompts.items()):
        raise OptionError(
            f"{what} must map prompt names to prefixes, e.g. {{'query': 'query: ', 'document': 'passage: '}}, got {prompts!r}"
        )
    return dict(prompts)


def _text_tower(model: Any) -> Any:
    return model.towers["text"] if "text" in model.towers else None


def prompts_of(model: Any) -> dict[str, str]:
    """The model's prompts by name (empty for a model without a text tower or prompts)."""
    return dict(getattr(_text_tower(model), "prompts", None) or {})


def default_prompt_name(model: Any) -> str | None:
    """The name of the prompt ``encode`` uses when given none, or None."""
    return getattr(_text_tower(model), "default_prompt_name", None)


def set_prompts(model: Any, prompts: dict[str, str], default_name: str | None = None) -> None:
    """Give an :class:`~finetuner.EmbeddingModel`'s text tower these prompts (replacing its own) and default prompt name.

    ``set_prompts(model, {"query": "query: ", "document": "passage: "})``: ``encode(...,
    prompt_name="query")`` then prefixes ``"query: "``, and ``fit`` and ``evaluate`` put each
    side's prompt before its texts. They are saved with the model and exported.
    """
    prompts = check_prompts(prompts)
    tower = _text_tower(model)
    if tower is None:
        if prompts:
            raise OptionError(f"prompts prefix texts, and this model has no text tower (towers: {', '.join(model.towers)})")
        return
    if default_name is not None and default_name not in prompts:
        raise UnknownNameError("default prompt name", default_name, sorted(prompts))
    tower.prompts = prompts
    tower.default_prompt_name = default_name


def resolve_prompt(model: Any, prompt: str | None = None, prompt_name: str | None = None) -> str:
    """The prefix ``encode`` puts before each text: ``prompt``, the prompt named ``prompt_name``, else the default ("")."""
    if prompt is not None and prompt_name is not None:
        raise OptionError("give prompt= (the text) or prompt_name= (one of the model's prompts), not both")
    if prompt is not None:
        if not isinstance(prompt, str):
            raise OptionError(f"prompt must be a string, got {prompt!r}")
        return prompt
    prompts = prompts_of(model)
    if prompt_name is None:
        prompt_name = default_prompt_name(model)
        return prompts.get(prompt_name, "") if prompt_name is not None else ""
    if prompt_name not in prompts:
        known = sorted(prompts)
        raise UnknownNameError("prompt name", str(prompt_name), known, hint="" if known else "This model has no prompts.")
    return prompts[prompt_name]


def side_prompt(model: Any, side: str) -> str:
    """The prefix of the ``"query"`` or ``"document"`` side: its named prompt, else the default prompt, else ""."""
    prompts = prompts_of(model)
    names = (QUERY,) if side == QUERY else DOCUMENT_NAMES
    name = next((n for n in names if n in prompts), None)
    return prompts[name] if name is not None else resolve_prompt(model)


def prefixed(items: Sequence[Any], prompt: str) -> list[Any]:
    """``items`` with ``prompt`` put before each string (other items, such as images, as they are)."""
    if not prompt:
        return list(items)
    return [prompt + item if isinstance(item, str) else item for item in items]
