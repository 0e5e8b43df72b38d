"""WiSE-FT (Wortsman et al., 2022): fine-tuned weights interpolated with the pretrained ones.

``alpha * fine-tuned + (1 - alpha) * pretrained`` keeps much of what fine-tuning gained while
giving back much of the pretrained model's strength on other data. Only the towers' weights are
interpolated: finetuner's projection heads (``output_dim=``) and the temperature have no
pretrained counterpart and keep their trained values.

A layer with a LoRA adapter is interpolated in its effective weight ``W + s * B @ A``: its
base weight is interpolated and ``B`` scaled by alpha (``A`` kept), which is exact, where
interpolating ``A`` and ``B`` each would scale ``B @ A`` by about alpha squared. The model keeps
its adapters (an artifact stays small); with a frozen base, as LoRA trains it, the base is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from finetuner.errors import ModelNotAvailableError, TrainingError
from finetuner.lora import adapted_layers, delta_weight
from finetuner.models.embedding import EmbeddingModel

BASE, LORA_A, LORA_B = "base_layer.", "lora_A.", "lora_B."


def tower_weights(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    """A CPU copy of the towers' effective floating-point weights and buffers, by their names in ``model.towers``.

    A LoRA adapter is folded into its layer's weight, under the name the plain layer gives it.
    """
    layers = adapted_layers(model.towers)
    weights = {}
    for name, t in model.towers.state_dict().items():
        role, plain = _role(name, layers)
        if t.is_floating_point() and role is None:
            weights[plain] = t.detach().to("cpu", copy=True)
    for prefix, layer in layers.items():
        weights[f"{prefix}.weight"] += delta_weight(layer).detach().to("cpu", weights[f"{prefix}.weight"].dtype)
    return weights


@torch.no_grad()
def interpolate(model: EmbeddingModel, start: dict[str, torch.Tensor], alpha: float) -> None:
    """Make each tower's effective weight ``alpha * its value + (1 - alpha) * start``, in place.

    ``start`` is what :func:`tower_weights` gives. ``alpha`` 1 keeps the weights as they are and
    0 restores ``start`` exactly (an adapter then adds nothing).
    """
    layers = adapted_layers(model.towers)
    _check_same_names(model, start, layers)
    for name, current in _floating(model).items():
        role, plain = _role(name, layers)
        if role == LORA_B:
            current.mul_(alpha)
        elif role is None:
            current.lerp_(start[plain].to(current.device, current.dtype), 1.0 - alpha)


def _role(name: str, layers: dict[str, Any]) -> tuple[str | None, str]:
    """(``LORA_A`` or ``LORA_B`` for an adapter's weight, else None; the name the plain architecture gives it)."""
    for prefix in layers:
        if name.startswith(f"{prefix}."):
            rest = name[len(prefix) + 1 :]
            if rest.startswith(BASE):
                return None, f"{prefix}.{rest[len(BASE) :]}"
            return (LORA_B if rest.startswith(LORA_B) else LORA_A), name
    return None, name


def _floating(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    return {name: t for name, t in model.towers.state_dict().items() if t.is_floating_point()}


def pretrained_weights(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    """The towers' weights as published: each backbone of ``model.sources`` built again with ``pretrained=True``.

    Needs those weights where the backbone's plugin finds them (its cache, or the network).
    """
    from finetuner.models.build import build_towers

    weights: dict[str, torch.Tensor] = {}
    for source in model.sources:
        try:
            towers, _, _ = build_towers(source["name"], pretrained=True, **source["options"])
        except ModelNotAvailableError as exc:
            raise ModelNotAvailableError(
                f"WiSE-FT interpolates with the pretrained weights of {source['name']!r}: {exc}"
            ) from exc
        for modality, tower in towers.items():
            weights.update({f"{modality}.{name}": t for name, t in tower.state_dict().items() if t.is_floating_point()})
    return weights


def evaluate_alphas(
    model: EmbeddingModel, data: Any, alphas: Iterable[float], pretrained: dict[str, torch.Tensor], **options: Any
) -> dict[float, dict[str, float]]:
    """:func:`finetuner.evaluate` (with ``options``) of ``model`` interpolated with ``pretrained`` at each alpha.

    The model's own weights (alpha 1) are restored afterwards.
    """
    from finetuner.evaluation import evaluate

    tuned = {name: t.detach().to("cpu", copy=True) for name, t in _floating(model).items()}
    results = {}
    try:
        for alpha in alphas:
            _assign(model, tuned)
            interpolate(model, pretrained, alpha)
            results[alpha] = evaluate(model, data, **options)
    finally:
        _assign(model, tuned)
    return results


@torch.no_grad()
def _assign(model: EmbeddingModel, weights: dict[str, torch.Tensor]) -> None:
    state = model.towers.state_dict()
    for name, value in weights.items():
        state[name].copy_(value)


def _check_same_names(model: EmbeddingModel, start: dict[str, torch.Tensor], layers: dict[str, Any]) -> None:
    """Refuse weights that are not the towers' own: other names or shapes."""
    state = {}
    for name, t in _floating(model).items():
        role, plain = _role(name, layers)
        if role is None:
            state[plain] = t
    differ = sorted(set(state) ^ set(start)) or [n for n in state if state[n].shape != start[n].shape]
    if differ:
        raise TrainingError(
            f"WiSE-FT: the pretrained weights do not fit the model's towers ({len(differ)} tensors differ, "
            f"such as {differ[0]!r}); they must come from the same backbones with the same options"
        )
