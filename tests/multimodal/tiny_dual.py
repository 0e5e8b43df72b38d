"""Tiny random transformers dual encoders (SigLIP, SigLIP 2) with a word-level tokenizer, saved as folders.

Everything but the embedding size is tiny: 1-layer encoders, 32x32 images, a 10-word
vocabulary, 16 text positions. ``dim`` is the text head's and the image encoder's width, so
a listed model's true dimension can hold while the rest is small.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ("a", "photo", "of", "cat", "dog", "red", "car")
MAX_POSITIONS = 16
IMAGE_SIZE = 32
LOGIT_SCALE = 2.5  # not the init of SiglipModel, so a test can see it travel with the model
LOGIT_BIAS = -6.5  # nor is this its bias


def write_word_tokenizer(folder: Path) -> tuple[int, int]:
    """A lower-casing word-level tokenizer that ends each text with ``</s>`` (also the pad); returns (vocab size, eos id)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(("<unk>", "</s>", *WORDS))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", eos_token="</s>", pad_token="</s>", model_max_length=MAX_POSITIONS
    ).save_pretrained(folder)
    return len(vocab), vocab["</s>"]


def write_tiny_siglip(folder: Path, *, dim: int = 48, model_type: str = "siglip", weights: bool = True) -> Path:
    """Save a tiny random SigLIP (``model_type="siglip2"``: SigLIP 2 with NaFlex patches), tokenizer and image config in ``folder``."""
    import torch
    from transformers import AutoModel, Siglip2Config, Siglip2ImageProcessor, SiglipConfig, SiglipImageProcessor

    folder.mkdir(parents=True, exist_ok=True)
    vocab_size, eos = write_word_tokenizer(folder)
    tiny = {"intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    text = {**tiny, "hidden_size": 32, "vocab_size": vocab_size, "max_position_embeddings": MAX_POSITIONS, "projection_size": dim}
    text |= {"pad_token_id": eos, "eos_token_id": eos, "bos_token_id": eos}
    if model_type == "siglip2":
        config = Siglip2Config(text_config=text, vision_config={**tiny, "hidden_size": dim, "patch_size": 8, "num_patches": 16})
        processor = Siglip2ImageProcessor(patch_size=8, max_num_patches=16)
    else:
        config = SiglipConfig(
            text_config=text, vision_config={**tiny, "hidden_size": dim, "image_size": IMAGE_SIZE, "patch_size": 16}
        )
        processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor.save_pretrained(folder)
    if weights:
        torch.manual_seed(0)
        model = AutoModel.from_config(config)
        with torch.no_grad():
            model.logit_scale.fill_(LOGIT_SCALE)
            model.logit_bias.fill_(LOGIT_BIAS)
        model.save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    return folder


def write_tiny_align(folder: Path) -> Path:
    """Save a tiny random ALIGN (BERT text, EfficientNet image encoder at a quarter width: 80-d) with a WordPiece tokenizer."""
    import torch
    from transformers import AlignConfig, AlignModel, BertTokenizerFast, EfficientNetImageProcessor

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "vocab_size": len(vocab),
    }
    # the image encoder's last block has 320 * 0.25 = 80 channels, the width it embeds images in
    vision = {"image_size": IMAGE_SIZE, "width_coefficient": 0.25, "depth_coefficient": 0.25, "hidden_dim": 64}
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    EfficientNetImageProcessor(size=size, crop_size=size, rescale_factor=1 / 127.5, rescale_offset=True).save_pretrained(folder)
    torch.manual_seed(0)
    AlignModel(AlignConfig(text_config=text, vision_config=vision, projection_dim=80)).save_pretrained(folder)
    return folder
