"""LoRA adapters (the ``lora`` extra: the peft library): train a few low-rank weights, ship only those.

``fit(..., lora=True)`` (or ``lora={"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": [...]}``)
puts a LoRA adapter on the linear layers of every tower that is not frozen; the towers' own
weights stay frozen, so only the adapters (and a projection head, with ``output_dim=``) train.
The layers are found by name in the tower (see :data:`FAMILIES`); a tower names its own with the
``lora_targets`` attribute, and ``target_modules`` names them for any tower.

An artifact of such a model holds the adapters, the head and the base backbone's name and
options; :func:`finetuner.load` rebuilds the base from that name with its pretrained weights
(which must be available then) and re-attaches the adapters, after checking that the base weights
are those the adapters were trained on (:func:`base_fingerprint`). Exports merge the adapters into
the weights first (:func:`merged`).

Nothing heavy is imported here until a function needs it: the fit options check settings with it.
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from finetuner.errors import ArtifactError, FinetunerError, OptionError, UnknownNameError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from finetuner.models.embedding import EmbeddingModel

EXTRA = "finetuner-core[lora]"
ADAPTER = "default"  # peft's adapter name; a model carries one adapter per tower
DEFAULTS: dict[str, Any] = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": None}
# fit()'s learning_rate with lora, unless given: on all-MiniLM-L6-v2 with 2,000 STSb pairs (one epoch, seed 0) it
# matched full fine-tuning at 2e-5 (Spearman 0.855 both), where 5e-4 gave 0.840 and 2e-4 0.797
LEARNING_RATE = 1e-3
# (architecture, the linear layers that tell it, the linear layers adapted), by the last part of their names:
# the attention projections and the feed-forward layers of each transformer block.
FAMILIES: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = (
    (
        "BERT-like (BERT, MiniLM, RoBERTa, ELECTRA, ALBERT)",
        frozenset({"query", "key", "value"}),
        ("query", "key", "value", "dense", "ffn", "ffn_output"),
    ),
    ("DeBERTa", frozenset({"query_proj", "key_proj", "value_proj"}), ("query_proj", "key_proj", "value_proj", "dense")),
    ("DistilBERT", frozenset({"q_lin", "k_lin", "v_lin"}), ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2")),
    ("MPNet, T5", frozenset({"q", "k", "v", "o"}), ("q", "k", "v", "o", "dense", "wi", "wo")),
    ("ModernBERT", frozenset({"Wqkv", "Wo"}), ("Wqkv", "Wo", "Wi")),
    (
        "CLIP, SigLIP",
        frozenset({"q_proj", "k_proj", "v_proj", "out_proj"}),
        ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    ),
    ("timm ViT", frozenset({"qkv", "proj"}), ("qkv", "proj", "fc1", "fc2")),
    ("open_clip (feed-forward layers)", frozenset({"c_fc", "c_proj"}), ("c_fc", "c_proj")),
)


def check_settings(value: Any) -> dict[str, Any] | None:
    """The ``lora`` option as a full settings mapping (None: no adapters); OptionError naming what is wrong."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(DEFAULTS)
    if not isinstance(value, Mapping):
        raise OptionError(f"lora must be True, False or a mapping of {', '.join(DEFAULTS)}, got {value!r}")
    for key in value:
        if key not in DEFAULTS:
            raise UnknownNameError("lora setting", str(key), DEFAULTS)
    settings = {**DEFAULTS, **value}
    r, alpha, dropout, targets = (settings[k] for k in DEFAULTS)
    if not _integer(r) or r < 1:
        raise OptionError(f"lora r (the rank) must be a positive integer, got {r!r}")
    if not _number(alpha) or alpha <= 0:
        raise OptionError(f"lora alpha (the scale is alpha / r) must be a positive number, got {alpha!r}")
    if not _number(dropout) or not 0 <= dropout < 1:
        raise OptionError(f"lora dropout must be a number in [0, 1), got {dropout!r}")
    if isinstance(targets, str):
        targets = [targets]
    if targets is not None and not (
        isinstance(targets, Sequence) and targets and all(isinstance(t, str) and t.strip() for t in targets)
    ):
        raise OptionError(f"lora target_modules must be a non-empty list of layer names, got {targets!r}")
    return {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": list(targets) if targets is not None else None}


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (_integer(value) or isinstance(value, float)) and math.isfinite(value)


def require_peft(what: str) -> None:
    """Raise a :class:`FinetunerError` naming the ``lora`` extra when peft is not installed."""
    try:
        import peft  # noqa: F401
    except ImportError as exc:
        raise FinetunerError(f"{what} needs the peft library: pip install '{EXTRA}' ({exc})") from exc


def add_adapters(model: EmbeddingModel, settings: dict[str, Any]) -> None:
    """Put a LoRA adapter on every tower of ``model`` that is not frozen (``settings`` from :func:`check_settings`)."""
    if model.lora is not None:
        raise OptionError("lora: this model already carries LoRA adapters; fit it without lora= to train them further")
    require_peft("lora=")
    frozen = model.frozen_modalities()
    modalities = [m for m in model.modalities if m not in frozen]
    if not modalities:
        raise OptionError("lora adapts the towers that are not frozen, and every tower is frozen (freeze=)")
    names = {m: target_names(model.tower(m), m, settings["target_modules"]) for m in modalities}
    _attach(model, {**{k: settings[k] for k in ("r", "alpha", "dropout")}, "target_modules": names})


def target_names(tower: nn.Module, modality: str, given: Sequence[str] | None) -> list[str]:
    """The names (last parts, or dotted suffixes) of the linear layers to adapt in ``tower``: ``given``, or known ones.

    Without ``given`` they are the tower's ``lora_targets``, else those of the first architecture
    in :data:`FAMILIES` whose telling layers the tower has. OptionError when nothing is known.
    """
    linears = _linears(tower)
    present = sorted({name.rsplit(".", 1)[-1] for name in linears})
    described = f"the {modality} tower ({type(tower).__name__})"
    option = "target_modules"
    if given is None and getattr(tower, "lora_targets", None) is not None:
        given, option = tower.lora_targets, f"{type(tower).__name__}.lora_targets"
    if given is None:
        family = next((targets for _, telling, targets in FAMILIES if telling <= set(present)), None)
        if family is None and not present:
            raise OptionError(
                f"lora: {described} has no linear layer for LoRA to adapt (target_modules= names linear layers): "
                f"freeze that tower (freeze={modality!r}) or train without lora"
            )
        if family is None:
            known = ", ".join(name for name, _, _ in FAMILIES)
            raise OptionError(
                f"lora: no LoRA target layers are known for {described} (known: {known}). Name them with "
                f"lora={{'target_modules': [...]}}; its linear layers are named {', '.join(present)}"
            )
        given = [name for name in family if name in present]
    if not _matching(linears, given):
        raise OptionError(
            f"lora: {option}={list(given)} name no linear layer of {described}; its linear layers are named "
            f"{', '.join(present) or '(none)'}"
        )
    return list(given)


def _linears(tower: nn.Module) -> list[str]:
    """The names of the tower's linear layers that run as modules (not the output projections nn.MultiheadAttention reads)."""
    from torch import nn

    attention = [name for name, m in tower.named_modules() if isinstance(m, nn.MultiheadAttention)]
    return [
        name
        for name, m in tower.named_modules()
        if isinstance(m, nn.Linear) and not any(name.startswith(f"{a}.") for a in attention)
    ]


def _matching(linears: list[str], names: Sequence[str]) -> list[str]:
    return [full for full in linears if any(full == n or full.endswith(f".{n}") for n in names)]


def _attach(model: EmbeddingModel, record: dict[str, Any]) -> None:
    """Inject the adapters ``record`` describes (its ``target_modules`` by modality) and set ``model.lora``."""
    from peft import LoraConfig
    from peft.functional import inject_adapter_in_model
    from torch import nn

    for modality, names in record["target_modules"].items():
        tower = model.tower(modality)
        config = LoraConfig(
            r=record["r"],
            lora_alpha=record["alpha"],
            lora_dropout=record["dropout"],
            target_modules=[f"tower.{name}" for name in _matching(_linears(tower), names)],
            bias="none",
        )
        # Injected through a bare holder: peft takes a module with a transformers config (a CLIP tower's) for a
        # transformers model, which a tower is not. The holder also keeps peft's bookkeeping off the tower.
        holder = nn.Module()
        holder.tower = tower
        inject_adapter_in_model(config, holder, adapter_name=ADAPTER)  # also freezes every other weight of the tower
    model.lora = record


def freeze_base(tower: nn.Module) -> None:
    """Make only the tower's adapter weights trainable."""
    from peft.functional import set_requires_grad

    tower.requires_grad_(False)
    set_requires_grad(tower, ADAPTER, True)


def adapter_names(model: EmbeddingModel) -> set[str]:
    """The state-dict names of the adapters' weights."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {
        f"{name}.{weight}"
        for name, layer in model.named_modules()
        if isinstance(layer, BaseTunerLayer)
        for weight, _ in layer.named_parameters()
        if not weight.startswith("base_layer.")
    }


def saved_names(model: EmbeddingModel) -> set[str]:
    """What an artifact of ``model`` holds: the adapters, the buffers and what is not in a tower (head, temperature)."""
    buffers = {name for name, _ in model.named_buffers()}
    adapters = adapter_names(model)
    return {name for name in model.state_dict() if not name.startswith("towers.") or name in adapters or name in buffers}


def adapter_state(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    """The weights an artifact of ``model`` holds (:func:`saved_names`), on the CPU."""
    kept = saved_names(model)
    return {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items() if name in kept}


def base_fingerprint(model: EmbeddingModel) -> str:
    """A hash of every tower weight that is not an adapter's: the base the artifact is rebuilt from."""
    import torch

    adapters = adapter_names(model)
    digest = hashlib.blake2b(digest_size=16)
    for name, weight in sorted(model.towers.named_parameters(prefix="towers")):
        if name not in adapters:
            digest.update(name.encode())
            digest.update(weight.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def record(model: EmbeddingModel) -> dict[str, Any]:
    """The ``lora`` field of the artifact's JSON: the settings, the adapted layers and the base's fingerprint."""
    return {**model.lora, "base_fingerprint": base_fingerprint(model)}


def load_adapters(model: EmbeddingModel, saved: dict[str, Any], weights: dict[str, torch.Tensor], where: str) -> None:
    """Re-attach the adapters an artifact's ``lora`` field describes to ``model`` (its rebuilt base) and load ``weights``.

    ArtifactError when the base differs from the one the adapters were trained on, or the weights do not fit.
    """
    require_peft(f"{where} holds a LoRA adapter; loading it")
    try:
        _attach(model, {k: saved[k] for k in ("r", "alpha", "dropout", "target_modules")})
    except (FinetunerError, ValueError) as exc:
        raise ArtifactError(f"{where}: cannot re-attach its LoRA adapters to the rebuilt base model: {exc}") from exc
    if base_fingerprint(model) != saved["base_fingerprint"]:
        names = ", ".join(repr(s["name"]) for s in model.sources)
        raise ArtifactError(
            f"{where} holds a LoRA adapter trained on other base weights than those of {names} here (fingerprint "
            f"{saved['base_fingerprint']}): load rebuilds the base from its name with its pretrained weights, so they must be "
            "the same ones (the same revision; not weights= of your own)"
        )
    expected = saved_names(model)
    unexpected = sorted(set(weights) - expected)
    missing = sorted(expected - set(weights))
    if unexpected or missing:
        raise ArtifactError(
            f"the adapter weights of {where} do not fit the model it describes: "
            f"unexpected {unexpected[:3]}, missing {missing[:3]}"
        )
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        raise ArtifactError(f"the adapter weights of {where} do not fit the model it describes: {exc}") from exc


def adapted_layers(module: nn.Module) -> dict[str, nn.Module]:
    """The layers of ``module`` that carry a LoRA adapter, by their names in it."""
    if sys.modules.get("peft") is None:  # not imported: no adapter can exist
        return {}
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: layer for name, layer in module.named_modules() if isinstance(layer, BaseTunerLayer)}


def delta_weight(layer: nn.Module) -> torch.Tensor:
    """What ``layer``'s adapter adds to its weight: ``alpha / r * B @ A``."""
    return layer.get_delta_weight(ADAPTER)


def merge_adapters(module: nn.Module) -> None:
    """Fold every LoRA adapter in ``module`` into the weights of its layer, which then replaces it (in place)."""
    for name, layer in adapted_layers(module).items():
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent), child, layer.get_base_layer())


def merge_into(model: EmbeddingModel) -> None:
    """Fold ``model``'s adapters into its towers' weights, in place: it becomes the plain architecture."""
    for modality in (model.lora or {}).get("target_modules", {}):
        merge_adapters(model.tower(modality))
    model.lora = None


def merged(model: EmbeddingModel) -> EmbeddingModel:
    """``model`` itself without adapters; else a copy with them merged into the weights (what exports write)."""
    if model.lora is None:
        return model
    copied = copy.deepcopy(model)
    merge_into(copied)
    return copied
