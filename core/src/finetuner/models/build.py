"""build_model(): resolve a backbone name through the plugins and wrap it as an EmbeddingModel."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from finetuner.errors import FinetunerError, OptionError, PluginError, UnknownNameError
from finetuner.models.embedding import EmbeddingModel
from finetuner.models.tower import Tower
from finetuner.registry import get_spec

# Options that say where weights come from; they are not part of the architecture.
WEIGHT_OPTIONS = ("pretrained", "weights", "local_dir")


def build_towers(
    name: str, *, pretrained: bool = True, **options: Any
) -> tuple[dict[str, Tower], dict[str, float], dict[str, Any]]:
    """Build one backbone: its towers, its initial logit_scale and logit_bias (where it has them) and its source record."""
    local_dir = options.get("local_dir")
    spec = get_spec(name, str(local_dir) if local_dir is not None else None)
    builder = _builder(spec, name)
    _check_options(builder, name, options)
    try:
        built = builder(pretrained=pretrained, **options)
    except FinetunerError:
        raise
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise _builder_failed(spec, name, exc) from exc
        raise UnknownNameError(f"option for {name!r}", str(exc).rsplit(" ", 1)[-1].strip("'"), []) from exc
    except Exception as exc:
        raise _builder_failed(spec, name, exc) from exc
    if isinstance(built, EmbeddingModel):
        towers = dict(built.towers.items())
        logits = {n: float(p.detach()) for n in ("logit_scale", "logit_bias") if (p := getattr(built, n)) is not None}
    elif isinstance(built, Tower):
        towers, logits = {built.modality: built}, {}
    else:
        raise PluginError(f"plugin {spec.plugin!r} built {type(built).__name__} for {name!r}, not a Tower or EmbeddingModel")
    for modality, tower in towers.items():
        if tower.output_dim != spec.output_dim:
            raise PluginError(
                f"plugin {spec.plugin!r}: the {modality} tower of {name!r} returns {tower.output_dim}-d embeddings, "
                f"its spec says {spec.output_dim}"
            )
    source = {
        "name": spec.name,
        "plugin": spec.plugin,
        "options": {k: _jsonable(v) for k, v in options.items() if k not in WEIGHT_OPTIONS},
        "modalities": list(towers),
        "base_model": next((t.base_model for t in towers.values() if t.base_model), None),
    }
    return towers, logits, source


def build_model(
    name: str,
    *,
    output_dim: int | None = None,
    normalize: bool = True,
    freeze: bool | str | list[str] = False,
    pretrained: bool = True,
    **options: Any,
) -> EmbeddingModel:
    """Build an embedding model from a backbone name or alias.

    ``"TEXT+IMAGE"`` (for example ``"all-MiniLM-L6-v2+efficientnet_b0"``) joins a text and an
    image backbone into a two-tower text-to-image model; ``output_dim`` then sets the shared
    space (each tower gets a projection head), and options go to the tower that takes them
    (see :func:`build_two_tower`). Other options go to the plugin's builder (``pooling=``,
    ``weights=PATH``, ``max_length=``, ...). ``freeze`` freezes every tower (True) or the
    named ones (``"image"``).
    """
    output_dim = check_output_dim(output_dim)
    for flag, value in (("normalize", normalize), ("pretrained", pretrained)):
        if not isinstance(value, bool):
            raise OptionError(f"{flag} must be True or False, got {value!r}")
    if "+" in name and get_spec_or_none(name) is None:
        return build_two_tower(
            *name.split("+", 1), output_dim=output_dim, normalize=normalize, freeze=freeze, pretrained=pretrained, **options
        )
    towers, logits, source = build_towers(name, pretrained=pretrained, **options)
    model = EmbeddingModel(towers, sources=[source], output_dim=output_dim, normalize=normalize, **logits)
    model.freeze(freeze)
    return model


def check_output_dim(value: Any) -> int | None:
    """``output_dim`` as an int of at least 1 (numeric strings, as YAML may give them, converted), or None."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"output_dim must be None (no projection head) or an integer in [1, inf), got {value!r}")
    return value


def build_two_tower(
    text: str,
    image: str,
    *,
    output_dim: int | None = None,
    normalize: bool = True,
    freeze: bool | str | list[str] = False,
    pretrained: bool = True,
    text_options: dict[str, Any] | None = None,
    image_options: dict[str, Any] | None = None,
    **options: Any,
) -> EmbeddingModel:
    """Join any text backbone and any image backbone into one text-to-image model.

    ``options`` go to the one tower whose builder takes them by name (``image_size=`` to a
    timm or torchvision image tower, ``max_length=`` to a text tower); an option both builders
    take goes in ``text_options={...}`` or ``image_options={...}`` (where ``pretrained`` may
    differ from the model's: ``image_options={"pretrained": False}``). An option no builder names
    goes to the one builder that takes any (``**options``). Anything else is a
    :class:`FinetunerError` naming the option and each tower's options.
    """
    routed = route_options({"text": text, "image": image}, options, {"text": text_options, "image": image_options})
    text_towers, _, text_source = build_towers(text, **{"pretrained": pretrained, **routed["text"]})
    image_towers, _, image_source = build_towers(image, **{"pretrained": pretrained, **routed["image"]})
    for label, towers, wanted in (("text", text_towers, text), ("image", image_towers, image)):
        if list(towers) != [label]:
            raise ValueError(f"{wanted!r} is not a {label} backbone (it has towers {list(towers)})")
    model = EmbeddingModel(
        {"text": text_towers["text"], "image": image_towers["image"]},
        sources=[text_source, image_source],
        output_dim=output_dim,
        normalize=normalize,
    )
    model.freeze(freeze)
    return model


def route_options(
    names: dict[str, str], options: dict[str, Any], explicit: dict[str, dict[str, Any] | None]
) -> dict[str, dict[str, Any]]:
    """Each tower's builder options: its ``explicit`` ones, plus the ``options`` only its builder takes.

    ``names`` maps a tower (``"text"``) to its backbone name. An option taken by several
    builders, or by none, raises a :class:`FinetunerError`.
    """
    routed = {tower: dict(explicit.get(tower) or {}) for tower in names}
    accepted = {tower: _accepted(_builder(get_spec(name), name)) for tower, name in names.items()}
    for option, value in options.items():
        named = [tower for tower, (valid, _) in accepted.items() if option in valid]
        takers = named or [tower for tower, (_, takes_any) in accepted.items() if takes_any]
        if len(takers) == 1:
            routed[takers[0]][option] = value
            continue
        towers = "; ".join(
            f"{tower} tower {names[tower]!r}: {', '.join(valid) or '(none)'}{' and any other (**options)' if takes_any else ''}"
            for tower, (valid, takes_any) in accepted.items()
        )
        if takers:
            raise FinetunerError(
                f"option {option!r} is taken by the {' and the '.join(takers)} towers ({towers}): say which with "
                + " or ".join(f"{tower}_options={{{option!r}: ...}}" for tower in takers)
            )
        valid = sorted({name for named_options, _ in accepted.values() for name in named_options})
        raise UnknownNameError(f"option for {'+'.join(names.values())!r}", option, valid, hint=f"By tower: {towers}.")
    return routed


def _accepted(builder: Any) -> tuple[list[str], bool]:
    """The options ``builder`` takes by name (``pretrained`` aside), and whether it takes any (``**options``)."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return [], True
    named = [p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "pretrained"]
    return named, any(p.kind is p.VAR_KEYWORD for p in parameters)


def get_spec_or_none(name: str):
    try:
        return get_spec(name)
    except FinetunerError:
        return None


def _builder(spec: Any, name: str) -> Any:
    """The spec's builder, imported; a failure is the plugin's, and says so."""
    try:
        return spec.builder()
    except Exception as exc:
        raise _builder_failed(spec, name, exc) from exc


def _builder_failed(spec: Any, name: str, exc: Exception) -> PluginError:
    return PluginError(f"plugin {spec.plugin!r} failed to build model {name!r}: {type(exc).__name__}: {exc}")


def _check_options(builder: Any, name: str, options: dict[str, Any]) -> None:
    """A misspelt option is the user's mistake, not the plugin's: name it and the valid ones."""
    valid, takes_any = _accepted(builder)
    unknown = [option for option in options if option not in valid]
    if unknown and not takes_any:
        raise UnknownNameError(f"option for {name!r}", unknown[0], valid)


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value
