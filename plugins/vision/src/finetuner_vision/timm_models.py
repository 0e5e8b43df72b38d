"""timm backbones: ``timm/<name>`` for every model timm knows, built with ``num_classes=0``."""

from __future__ import annotations

import functools
from typing import NamedTuple

import timm
import torch
from timm.data import resolve_data_config

from finetuner import BackboneSpec, ModelNotAvailableError, PluginError, UnknownNameError
from finetuner.models import GeM
from finetuner_vision.builder import ImageOptions
from finetuner_vision.images import ImagePreprocessing
from finetuner_vision.plugin import TIMM_DESCRIPTION, TIMM_PREFIX, timm_builder
from finetuner_vision.tower import ImageTower
from finetuner_vision.weights import ALTERNATIVES, ensure_downloadable, load_weights_file, not_available, reachable

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# pretrained_cfg keys that say where the original weights came from, or describe its classifier or
# other eval sizes: an export's config.json leaves them out (timm's save_for_hf drops the same).
SOURCE_KEYS = {"url", "file", "hf_hub_id", "hf_hub_filename", "source", "tag", "state_dict", "label_names", "label_descriptions"}
PREPROCESSING_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


class TimmInfo(NamedTuple):
    output_dim: int
    architecture: str


def check_name(name: str) -> None:
    """Raise UnknownNameError, with close matches, for a name (``arch`` or ``arch.tag``) timm does not know."""
    known = name in timm.list_pretrained() if "." in name else timm.is_model(name)
    if not known:
        valid = timm.list_pretrained() if "." in name else timm.list_models()
        raise UnknownNameError("timm model", TIMM_PREFIX + name, [TIMM_PREFIX + n for n in valid])


@functools.lru_cache(maxsize=256)
def timm_info(name: str) -> TimmInfo:
    """The true embedding size and the architecture family, from a weightless meta-device build."""
    check_name(name)
    shape = _meta_output(name)
    if len(shape) != 2:
        raise PluginError(
            f"{TIMM_PREFIX + name} is not supported: with num_classes=0 it returns {list(shape)}, not one vector per image"
        )
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    attention = any("Attention" in type(m).__name__ for m in model.modules())
    return TimmInfo(int(shape[-1]), "transformer" if attention else "CNN")


def resolve_spec(name: str) -> BackboneSpec:
    """The spec of ``timm/<name>``, built on the fly."""
    info = timm_info(name)
    return BackboneSpec(
        name=TIMM_PREFIX + name,
        task="image-to-image",
        output_dim=info.output_dim,
        architecture=info.architecture,
        description=TIMM_DESCRIPTION,
        build=timm_builder(name),
    )


def build_timm(name: str, options: ImageOptions) -> ImageTower:
    """``timm.create_model(name, num_classes=0)`` as a tower.

    ``pooling="gem"`` builds it with ``global_pool=""`` and applies GeM to the feature map it
    then returns (CNNs; token outputs are refused). Pretrained weights are timm's (Hugging Face
    hub cache or download); ``options.weights`` is a state dict in timm's key names. Models with
    a fixed input size, such as ViTs, are built for ``image_size`` (``img_size``).
    """
    info = timm_info(name)
    label = TIMM_PREFIX + name
    gem = options.pooling == "gem"
    kwargs: dict[str, object] = {"num_classes": 0, **({"global_pool": ""} if gem else {})}
    if options.image_size is not None and timm.models.get_pretrained_cfg(name).fixed_input_size:
        kwargs["img_size"] = options.image_size
    pool, channels_axis = (GeM(), _gem_channels_axis(name, label, info.output_dim)) if gem else (None, 1)
    from_hub = options.pretrained and options.weights is None
    if from_hub:
        _ensure_pretrained(name, label)
        try:
            model = timm.create_model(name, pretrained=True, **kwargs)
        except OSError as exc:  # hub or URL download failures, offline mode
            raise not_available(label, f"loading them failed: {exc}") from exc
    else:
        model = timm.create_model(name, pretrained=False, **kwargs)
    if options.weights is not None:
        classifier = model.pretrained_cfg.get("classifier") or ()
        ignore = [classifier] if isinstance(classifier, str) else list(classifier)
        load_weights_file(model, options.weights, model=label, ignore=ignore)
    preprocessing = options.preprocessing(lambda: ImagePreprocessing.from_timm(model))
    tower = ImageTower(
        model,
        output_dim=info.output_dim,
        preprocessing=preprocessing,
        pool=pool,
        channels_axis=channels_axis,
        channels_last=info.architecture == "CNN",
    )
    hub_id = model.pretrained_cfg.get("hf_hub_id") if from_hub else None
    tower.base_model = hub_id.split("@")[0] if hub_id else None
    return tower


def timm_config(model: torch.nn.Module, preprocessing: dict[str, object]) -> dict[str, object]:
    """timm's ``config.json`` for ``model`` as a feature extractor (``num_classes`` 0) with ``preprocessing``.

    ``timm.create_model("local-dir:FOLDER", pretrained=True)`` rebuilds it from this and the
    folder's ``model.safetensors``; a model built for another input size records it in ``model_args``.
    """
    cfg = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in model.pretrained_cfg.items()
        if k not in SOURCE_KEYS and not k.startswith("test_") and v is not None
    }
    cfg.update({k: preprocessing[k] for k in PREPROCESSING_KEYS if k in preprocessing})
    cfg.update(num_classes=0, custom_load=False)
    if cfg["input_size"] != list(model.pretrained_cfg["input_size"]):
        cfg.pop("pool_size", None)  # the feature map size of the default input
    config: dict[str, object] = {"architecture": cfg.pop("architecture"), "num_classes": 0, "num_features": model.num_features}
    if cfg.get("fixed_input_size"):
        config["model_args"] = {"img_size": list(cfg["input_size"][1:])}
    return {**config, "pretrained_cfg": cfg}


def _gem_channels_axis(name: str, label: str, output_dim: int) -> int:
    """Where the channels are in the unpooled output; refuse outputs GeM cannot pool to ``output_dim``."""
    shape, layout = _unpooled_output(name)
    if len(shape) != 4:
        raise UnknownNameError(
            "pooling", "gem", ["avg"], hint=f"{label} returns tokens {list(shape)}, not a feature map, so GeM does not apply."
        )
    axis = -1 if layout == "NHWC" else 1
    if shape[axis] != output_dim:
        raise UnknownNameError(
            "pooling", "gem", ["avg"], hint=f"{label} has {shape[axis]} channels before pooling but {output_dim} after its head."
        )
    return axis


def _unpooled_output(name: str) -> tuple[tuple[int, ...], str]:
    """Shape and layout of the output of ``name`` built with ``global_pool=""``."""
    shape = _meta_output(name, global_pool="")
    with torch.device("meta"):
        layout = getattr(timm.create_model(name, pretrained=False, num_classes=0, global_pool=""), "output_fmt", "NCHW")
    return shape, getattr(layout, "value", layout)


@functools.lru_cache(maxsize=256)
def _meta_output(name: str, **options: str) -> tuple[int, ...]:
    """The output shape of ``timm.create_model(name, num_classes=0, **options)`` for one image, on the meta device (no weights, no compute)."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0, **options).eval()
        size = resolve_data_config(model=model)["input_size"]
        return tuple(model(torch.empty(1, *size)).shape)


def _ensure_pretrained(name: str, label: str) -> None:
    """Return when timm's weights for ``name`` are cached or downloadable; raise otherwise, without waiting long."""
    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = cfg.hf_hub_id if cfg else None
    url = cfg.url if cfg else None
    if hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        repo = hub_id.split("@")[0]
        # timm prefers a safetensors twin of any *pytorch_model.bin it is told to load
        files = (
            (cfg.hf_hub_filename, cfg.hf_hub_filename.replace("pytorch_model.bin", "model.safetensors"))
            if cfg.hf_hub_filename
            else HF_WEIGHT_FILES
        )
        if any(isinstance(try_to_load_from_cache(repo, f), str) for f in files):
            return
        if constants.is_offline_mode():
            raise not_available(label, f"{repo} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
        if not reachable(constants.ENDPOINT):
            raise not_available(label, f"{repo} is not in the Hugging Face cache and {constants.ENDPOINT} cannot be reached")
    elif url:
        ensure_downloadable(url, label)
    else:
        raise ModelNotAvailableError(f"timm has no pretrained weights for {label}: {ALTERNATIVES}.")
