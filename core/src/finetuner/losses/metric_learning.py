"""Losses for labeled data, by name from pytorch-metric-learning (PML), with optional miners.

Losses with trainable parameters of their own (ArcFace, CosFace, ProxyAnchor, SoftTriple, ...)
need their own optimizer, as PML recommends: see :attr:`MetricLoss.needs_optimizer`.
Under ``torch.distributed`` embeddings and labels are gathered from every rank and each rank
computes the loss of the global batch (so mining sees the global batch too).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from torch import nn

from finetuner.losses.base import fp32, name_key, unknown_name
from finetuner.losses.distributed import gather_batch

DEFAULT_METRIC_LOSS = "TripletMarginLoss"
# PML classes that are abstract, or that refuse labels (VICReg compares two views, Manifold is unsupervised).
_NOT_LABELED_LOSSES = {"BaseMetricLossFunction", "GenericPairLoss", "ManifoldLoss", "VICRegLoss"}
_FILLED = {"num_classes": "num_classes", "embedding_size": "embedding_size", "descriptors_dim": "embedding_size"}


def metric_loss_names() -> list[str]:
    """PML loss classes usable on labeled data: ``forward(embeddings, labels)``."""
    base = pml_losses.BaseMetricLossFunction
    return sorted(
        n for n, c in vars(pml_losses).items() if isinstance(c, type) and issubclass(c, base) and n not in _NOT_LABELED_LOSSES
    )


def miner_names() -> list[str]:
    base = pml_miners.BaseMiner
    return sorted(n for n, c in vars(pml_miners).items() if isinstance(c, type) and issubclass(c, base) and c is not base)


def _lookup(what: str, name: str, names: list[str]) -> str:
    suffix = what.split()[-1]
    keys = {name_key(n, suffix): n for n in names}
    if name_key(name, suffix) not in keys:
        hint = f"Valid: {', '.join(names)}." if len(names) > 40 else ""  # UnknownNameError lists up to 40 itself
        raise unknown_name(what, name, keys, names, hint=hint)
    return keys[name_key(name, suffix)]


def init_parameters(cls: type) -> dict[str, bool]:
    """Named constructor parameters over the class hierarchy, each mapped to whether it has no default."""
    found: dict[str, bool] = {}
    for klass in cls.__mro__:
        if klass is nn.Module or "__init__" not in vars(klass):
            continue
        for p in list(inspect.signature(klass.__init__).parameters.values())[1:]:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(p.name, p.default is p.empty)
    return found


def build_miner(name_or_miner: str | nn.Module, **kwargs: Any) -> nn.Module:
    """A PML miner by class name (case-insensitive, "Miner" optional) or a miner object as is."""
    if not isinstance(name_or_miner, str):
        if kwargs:
            raise ValueError("miner options apply only when the miner is given by name")
        return name_or_miner
    return getattr(pml_miners, _lookup("miner", name_or_miner, miner_names()))(**kwargs)


class MetricLoss(nn.Module):
    """A PML loss (and optional miner) called as ``forward(embeddings, labels)``.

    ``labels`` is an integer tensor of class indices, stable over the whole run (losses with
    class parameters index them by label).
    """

    kinds = ("labeled",)

    def __init__(
        self,
        loss: nn.Module,
        miner: nn.Module | None = None,
        *,
        num_classes: int | None = None,
        embedding_size: int | None = None,
    ) -> None:
        super().__init__()
        self.loss = loss
        self.miner = miner
        self.num_classes = num_classes
        self.embedding_size = embedding_size

    @property
    def needs_optimizer(self) -> bool:
        """True when the loss has trainable parameters (proxies, class centres): give them their own optimizer,
        with a learning rate about 10-100x the model's."""
        return any(p.requires_grad for p in self.parameters())

    @fp32
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(labels, device=embeddings.device)
        if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(f"need [N, dim] embeddings and N labels, got {tuple(embeddings.shape)} and {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an integer tensor of class indices, got dtype {labels.dtype}")
        if self.embedding_size is not None and embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"{type(self.loss).__name__} was built for embedding_size={self.embedding_size}, got embeddings of dim {embeddings.shape[1]}"
            )
        if self.num_classes is not None and labels.numel() and not (labels.min() >= 0 and labels.max() < self.num_classes):
            raise ValueError(
                f"{type(self.loss).__name__} was built for num_classes={self.num_classes}: labels must lie in [0, {self.num_classes})"
            )
        embeddings, labels = gather_batch(embeddings, labels).tensors
        if self.miner is None:
            return self.loss(embeddings, labels)
        return self.loss(embeddings, labels, self.miner(embeddings, labels))


def build_metric_loss(
    name: str | nn.Module,
    *,
    embedding_size: int,
    num_classes: int | None = None,
    miner: str | nn.Module | None = None,
    **kwargs: Any,
) -> MetricLoss:
    """A PML loss by class name (case-insensitive, "Loss" optional) or a loss object, with an optional miner.

    ``num_classes`` and ``embedding_size`` are passed to the losses whose constructor takes them;
    ``kwargs`` go to the loss's constructor.
    """
    miner_module = None if miner is None else build_miner(miner)
    if not isinstance(name, str):
        if kwargs:
            raise ValueError("loss options apply only when the loss is given by name")
        return MetricLoss(name, miner_module)
    cls = getattr(pml_losses, _lookup("loss", name, metric_loss_names()))
    parameters = init_parameters(cls)
    given = {"num_classes": num_classes, "embedding_size": embedding_size}
    for parameter, source in _FILLED.items():
        if parameter in parameters and parameter not in kwargs and given[source] is not None:
            kwargs[parameter] = given[source]
    if parameters.get("num_classes") and "num_classes" not in kwargs:
        raise ValueError(f"{cls.__name__} needs num_classes (the number of distinct labels)")
    try:
        loss = cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"cannot build {cls.__name__} with options {sorted(kwargs)}: {error}") from error
    uses_classes = "num_classes" in kwargs and any(p.requires_grad for p in loss.parameters())
    return MetricLoss(
        loss,
        miner_module,
        num_classes=kwargs["num_classes"] if uses_classes else None,
        embedding_size=kwargs.get("embedding_size", kwargs.get("descriptors_dim")) if uses_classes else None,
    )
