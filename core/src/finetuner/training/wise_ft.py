"""WiSE-FT (Wortsman et al., 2022): fine-tuned weights interpolated with the pretrained ones.

``alpha * fine-tuned + (1 - alpha) * pretrained`` keeps much of what fine-tuning gained while
giving back much of the pretrained model's strength on other data. Only the towers' weights are
interpolated: finetuner's projection heads (``output_dim=``) and the temperature have no
pretrained counterpart and keep their trained values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from finetuner.errors import ModelNotAvailableError, TrainingError
from finetuner.models.embedding import EmbeddingModel


def tower_weights(model: EmbeddingModel) -> dict[str, torch.Tensor]:
    """A CPU copy of the towers' floating-point weights and buffers, by their names in ``model.towers``."""
    return {name: t.detach().to("cpu", copy=True) for name, t in model.towers.state_dict().items() if t.is_floating_point()}


@torch.no_grad()
def interpolate(model: EmbeddingModel, start: dict[str, torch.Tensor], alpha: float) -> None:
    """Set each tower weight to ``alpha * its value + (1 - alpha) * start``, in place.

    ``alpha`` 1 keeps the weights as they are and 0 restores ``start`` exactly.
    """
    _check_same_names(model, start)
    state = model.towers.state_dict()
    for name, initial in start.items():
        current = state[name]
        current.lerp_(initial.to(current.device, current.dtype), 1.0 - alpha)


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

    tuned = tower_weights(model)
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


def _check_same_names(model: EmbeddingModel, start: dict[str, torch.Tensor]) -> None:
    """Refuse weights that are not the towers' own: other names or shapes."""
    state = {name: t for name, t in model.towers.state_dict().items() if t.is_floating_point()}
    differ = sorted(set(state) ^ set(start)) or [n for n in state if state[n].shape != start[n].shape]
    if differ:
        raise TrainingError(
            f"WiSE-FT: the pretrained weights do not fit the model's towers ({len(differ)} tensors differ, "
            f"such as {differ[0]!r}); they must come from the same backbones with the same options"
        )
