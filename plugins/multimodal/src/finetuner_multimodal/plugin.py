"""The plugin's hooks: registers the CLIP backbones and resolves the open families. Imports no torch or transformers.

Besides the registered models, ``hf-clip:<model id or folder>`` builds any transformers CLIP,
SigLIP, SigLIP 2 or ALIGN dual encoder and ``open_clip/<architecture>[:<pretrained tag>]`` any
open_clip model (with ``pip install 'finetuner-multimodal[open_clip]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import finetuner
from finetuner_multimodal.hf_clip import HF_CLIP_DESCRIPTION, HF_CLIP_PREFIX, build_hf_clip, resolve_hf_clip
from finetuner_multimodal.open_clip_models import (
    OPEN_CLIP_DESCRIPTION,
    OPEN_CLIP_PREFIX,
    build_open_clip,
    resolve_open_clip,
)

# name -> (projection dim, one-line description, builder in finetuner_multimodal.clip)
CLIP_MODELS = {
    "openai/clip-vit-base-patch32": (512, "Pretrained on text image pairs by OpenAI", "build_clip_vit_base_patch32"),
    "openai/clip-vit-base-patch16": (512, "Pretrained on text image pairs by OpenAI, ViT-B/16", "build_clip_vit_base_patch16"),
    "openai/clip-vit-large-patch14": (768, "Pretrained on text image pairs by OpenAI, ViT-L/14", "build_clip_vit_large_patch14"),
}

# A few well-known members of the open families shown in the table: name -> (dimension, description).
HF_CLIP_LISTED = {
    "google/siglip-base-patch16-224": (768, "SigLIP ViT-B/16 by Google, pretrained on WebLI"),
    "google/siglip2-base-patch16-224": (768, "SigLIP 2 ViT-B/16 by Google, pretrained on WebLI"),
    "google/siglip-so400m-patch14-384": (1152, "SigLIP So400m/14 at 384 px by Google, pretrained on WebLI"),
}
OPEN_CLIP_LISTED = {
    "ViT-B-32:laion2b_s34b_b79k": (512, "open_clip ViT-B/32 pretrained on LAION-2B"),
    "ViT-B-16:laion2b_s34b_b88k": (512, "open_clip ViT-B/16 pretrained on LAION-2B"),
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
    families = (
        (HF_CLIP_PREFIX, HF_CLIP_LISTED, HF_CLIP_DESCRIPTION, build_hf_clip),
        (OPEN_CLIP_PREFIX, OPEN_CLIP_LISTED, OPEN_CLIP_DESCRIPTION, build_open_clip),
    )
    for prefix, listed, family, builder in families:
        for name, (dim, description) in listed.items():
            register(
                finetuner.BackboneSpec(
                    name=prefix + name,
                    task="text-to-image",
                    output_dim=dim,
                    architecture="transformer",
                    description=f"{description}; {family}",
                    build=partial(builder, name),
                    aliases=(name,) if prefix == HF_CLIP_PREFIX else (),  # the hub id alone, as for the CLIP models
                )
            )


@finetuner.hookimpl
def finetuner_resolve_backbone(name: str, local_dir: str | None) -> finetuner.BackboneSpec | None:
    """``hf-clip:<model id or folder>`` and ``open_clip/<architecture>[:<pretrained tag>]``."""
    if name.startswith(HF_CLIP_PREFIX):
        return resolve_hf_clip(name[len(HF_CLIP_PREFIX) :], local_dir)
    if name.startswith(OPEN_CLIP_PREFIX):
        return resolve_open_clip(name[len(OPEN_CLIP_PREFIX) :])
    return None
