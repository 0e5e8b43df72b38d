"""Layer-wise learning-rate decay (``fit(layer_decay=...)``): the lower a transformer block, the smaller its learning rate.

Each tower's parameters are numbered by depth from their names: 0 for the embeddings, ``n + 1``
for block ``n`` of the tower's one numbered stack of blocks, ``blocks + 1`` for everything after
them (final norm, pooler, the tower's projection). A parameter at depth ``d`` trains at
``learning_rate * layer_decay ** (blocks + 1 - d)``: the top at the full rate, the embeddings at
the smallest. finetuner's projection heads (``output_dim=``) and the temperature are above every
tower and train at the full rate.
"""

from __future__ import annotations

import re

from torch import nn

from finetuner.errors import TrainingError
from finetuner.models.embedding import EmbeddingModel

# the numbered blocks of the architectures this knows, in parameter names
BLOCK = re.compile(r"(?:^|\.)(?P<stack>encoder\.layers?|transformer\.layer|transformer\.resblocks|blocks)\.(?P<number>\d+)\.")
STACKS = (
    "encoder.layer.N (BERT and its kin), encoder.layers.N (CLIP, SigLIP), transformer.layer.N (DistilBERT), "
    "transformer.resblocks.N (open_clip), blocks.N (timm ViTs)"
)
# names (one part of a dotted parameter name) of what comes before the first block
EMBEDDINGS = frozenset(
    {
        "embeddings",  # Hugging Face BERT, CLIP, SigLIP
        "patch_embed",  # timm ViTs
        "pos_embed",
        "cls_token",
        "reg_token",
        "norm_pre",
        "token_embedding",  # open_clip
        "positional_embedding",
        "class_embedding",
        "conv1",
        "ln_pre",
        "pre_layrnorm",  # Hugging Face CLIP's vision tower (sic)
    }
)


def tower_depths(tower: nn.Module, label: str) -> tuple[dict[str, int], int]:
    """Each parameter's depth in ``tower`` (its name as ``named_parameters`` gives it), and the top depth.

    ``label`` names the tower in the error raised when its parameter names show no single stack of blocks.
    """
    names = [name for name, _ in tower.named_parameters()]
    found = {name: match for name in names if (match := BLOCK.search(name))}
    stacks = {name[: match.start("number")] for name, match in found.items()}
    if len(stacks) != 1:
        shown = f"several ({', '.join(sorted(stacks)[:3])})" if stacks else "none"
        raise TrainingError(
            f"layer_decay cannot number the layers of {label}: it knows the stacks of blocks {STACKS}, "
            f"and this tower's parameter names show {shown}. Leave layer_decay unset for this model"
        )
    top = max(int(match["number"]) for match in found.values()) + 2
    depths = {name: int(match["number"]) + 1 for name, match in found.items()}
    for name in names:
        if name not in depths:
            depths[name] = 0 if EMBEDDINGS & set(name.split(".")) else top
    return depths, top


def layer_scales(model: EmbeddingModel, decay: float) -> dict[nn.Parameter, float]:
    """The learning-rate multiplier of each trainable tower parameter; parameters not in it train at the full rate."""
    scales: dict[nn.Parameter, float] = {}
    for modality, tower in model.towers.items():
        trainable = {name: p for name, p in tower.named_parameters() if p.requires_grad}
        if not trainable:
            continue
        depths, top = tower_depths(tower, f"the {modality} tower ({type(tower).__name__})")
        scales.update({p: decay ** (top - depths[name]) for name, p in trainable.items()})
    return scales
