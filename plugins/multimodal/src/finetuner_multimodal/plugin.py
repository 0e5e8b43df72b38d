"""The plugin's hook: registers the CLIP backbones. Imports no torch or transformers."""

from __future__ import annotations

from collections.abc import Callable

import finetuner

# name -> (projection dim, one-line description, builder in finetuner_multimodal.clip)
CLIP_MODELS = {
    "openai/clip-vit-base-patch32": (512, "Pretrained on text image pairs by OpenAI", "build_clip_vit_base_patch32"),
    "openai/clip-vit-base-patch16": (512, "Pretrained on text image pairs by OpenAI, ViT-B/16", "build_clip_vit_base_patch16"),
    "openai/clip-vit-large-patch14": (768, "Pretrained on text image pairs by OpenAI, ViT-L/14", "build_clip_vit_large_patch14"),
}


@finetuner.hookimpl
def finetuner_register_backbones(register: Callable[[finetuner.BackboneSpec], None]) -> None:
    for name, (dim, description, builder) in CLIP_MODELS.items():
        register(
            finetuner.BackboneSpec(
                name=name,
                task="text-to-image",
                output_dim=dim,
                architecture="transformer",
                description=description,
                build=f"finetuner_multimodal.clip:{builder}",
            )
        )
