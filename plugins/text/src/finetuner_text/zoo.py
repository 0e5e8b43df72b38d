"""Builders by Hugging Face model id or folder: a text spec has ``build="finetuner_text.zoo:<source>"``.

``getattr(zoo, source)`` is :func:`finetuner_text.build_hf` with ``source`` bound, so a spec
(and an artifact) rebuilds its model through the ordinary ``"module:function"`` contract.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from finetuner_text import build_hf


def __getattr__(source: str) -> Callable[..., object]:
    if source.startswith("__"):
        raise AttributeError(source)
    return functools.partial(build_hf, source)
