"""finetuner-multimodal: CLIP text-to-image backbones for finetuner (two towers, one embedding space)."""

__version__ = "0.1.0"
