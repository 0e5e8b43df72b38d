"""Losses for fine-tuning, one file per family, behind one call interface for the training loop.

Build one with :func:`build_loss` (``None`` picks :func:`default_loss`)::

    loss = build_loss(name_or_module, kind=data.kind, task=model.task,
                      embedding_size=model.output_dim, num_classes=len(label_index))
    loss.to(device)
    value = loss(left, right, labels=labels, scores=scores,
                 logit_scale=model.logit_scale, logit_bias=model.logit_bias)

The returned :class:`Loss` is called the same way for every loss (``loss.compute(...)`` is the
same call). Embeddings are what ``EmbeddingModel`` returns (normalised or not: the built-in
losses use cosines); everything is computed in fp32 with autocast off. By data kind:

=========  ==================================  ======================================
kind       call                                built-in names (aliases)
=========  ==================================  ======================================
pairs      ``loss(queries, documents,          MultipleNegativesRankingLoss (mnrl,
           logit_scale=model.logit_scale)``    infonce, in-batch); ClipLoss (clip),
           (text-to-image: texts, images)      which needs the model's logit_scale;
                                               SigLIPLoss (siglip, sigmoid), which
                                               needs its logit_scale and logit_bias
labeled    ``loss(items, labels=int_tensor)``  any pytorch-metric-learning loss, e.g.
                                               TripletMarginLoss, ArcFaceLoss, SupConLoss
scored     ``loss(a, b, scores=float_tensor)`` CoSENTLoss (cosent),
                                               CosineSimilarityLoss (cosine)
=========  ==================================  ======================================

``logit_scale`` and ``logit_bias`` may always be passed (``None`` where the model has none):
losses that do not use them ignore them (``model.add_logit_bias()`` gives a model both).
Labels are class indices stable over the run (map label strings once).
``CosineSimilarityLoss`` takes ``score_range=(min, max)`` (e.g. the training data's range).
``MatryoshkaLoss`` (matryoshka) wraps any of them: ``build_loss("MatryoshkaLoss", loss="mnrl",
matryoshka_dims=(384, 256, 128, 64), ...)`` sums the inner loss over those truncations (the
other options go to the inner loss; see :mod:`finetuner.losses.matryoshka`).
Pairs with hard negatives pass them as ``negatives=`` (``[N * k, dim]``, pair ``i``'s ``k`` in
rows ``i * k`` onwards): MultipleNegativesRankingLoss and ClipLoss score each query against
them too (``loss.takes_negatives``); the others refuse them. CachedMultipleNegativesRankingLoss
(cachedmnrl, gradcache) and CachedClipLoss are the same losses trained by GradCache, the
towers run ``mini_batch_size`` examples at a time (:mod:`finetuner.losses.cached`).

Losses with parameters of their own (ArcFace, CosFace, ProxyAnchor, ...) report
``loss.needs_optimizer``: give ``loss.parameters()`` a separate optimizer with learning rate
``model_lr * loss.lr_multiplier`` (100 by default; PML recommends a separate, larger rate).

Under ``torch.distributed`` (DDP) the losses gather embeddings across ranks so in-batch
negatives span the global batch; every rank must call the loss each step, and what DDP
optimises (the mean over ranks) equals the single-process loss of the global batch. See
:mod:`finetuner.losses.distributed`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from finetuner.errors import OptionError, UnknownNameError
from finetuner.losses.base import TRAIN_KINDS, Loss, name_key, unknown_name
from finetuner.losses.cached import CachedClipLoss, CachedMultipleNegativesRankingLoss
from finetuner.losses.clip import ClipLoss
from finetuner.losses.distributed import gather_with_grad
from finetuner.losses.in_batch import MultipleNegativesRankingLoss
from finetuner.losses.matryoshka import MatryoshkaLoss
from finetuner.losses.metric_learning import (
    DEFAULT_METRIC_LOSS,
    MetricLoss,
    build_metric_loss,
    build_miner,
    metric_loss_names,
    miner_names,
)
from finetuner.losses.scored import CoSENTLoss, CosineSimilarityLoss
from finetuner.losses.siglip import SigLIPLoss
from finetuner.registry import TASKS

BUILTIN_LOSSES: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "MultipleNegativesRankingLoss": (MultipleNegativesRankingLoss, ("mnrl", "infonce", "in-batch")),
    "ClipLoss": (ClipLoss, ("clip",)),
    "CachedMultipleNegativesRankingLoss": (CachedMultipleNegativesRankingLoss, ("cachedmnrl", "gradcache")),
    "CachedClipLoss": (CachedClipLoss, ("cachedclip",)),
    "CoSENTLoss": (CoSENTLoss, ("cosent",)),
    "CosineSimilarityLoss": (CosineSimilarityLoss, ("cosine",)),
    "SigLIPLoss": (SigLIPLoss, ("siglip", "sigmoid")),
}
_KIND_DATA = {"pairs": "pairs (query, document)", "labeled": "labeled items", "scored": "scored pairs (a, b, score)"}

__all__ = [
    "BUILTIN_LOSSES",
    "CachedClipLoss",
    "CachedMultipleNegativesRankingLoss",
    "ClipLoss",
    "CoSENTLoss",
    "CosineSimilarityLoss",
    "Loss",
    "MatryoshkaLoss",
    "MetricLoss",
    "MultipleNegativesRankingLoss",
    "SigLIPLoss",
    "build_loss",
    "build_metric_loss",
    "build_miner",
    "default_loss",
    "gather_with_grad",
    "loss_names",
    "metric_loss_names",
    "miner_names",
]


def _check_kind_task(kind: str, task: str) -> None:
    if kind not in TRAIN_KINDS:
        raise UnknownNameError("data kind", kind, TRAIN_KINDS, hint="Retrieval data trains as pairs: pass kind='pairs'.")
    if task not in TASKS:
        raise UnknownNameError("task", task, TASKS)


def default_loss(kind: str, task: str, model: nn.Module | None = None) -> str:
    """pairs -> MultipleNegativesRankingLoss (ClipLoss for text-to-image), labeled -> TripletMarginLoss, scored -> CoSENTLoss.

    For pairs, a ``model`` whose towers all name the same ``default_loss`` (SigLIP's towers
    name SigLIPLoss) gets that loss instead.
    """
    _check_kind_task(kind, task)
    if kind == "pairs":
        named = {getattr(tower, "default_loss", None) for tower in getattr(model, "towers", {}).values()}
        if len(named) == 1 and None not in named:
            return named.pop()
        return "ClipLoss" if task == "text-to-image" else "MultipleNegativesRankingLoss"
    return DEFAULT_METRIC_LOSS if kind == "labeled" else "CoSENTLoss"


def loss_names(kind: str | None = None) -> list[str]:
    """Loss names usable on ``kind`` data (all of them when None)."""
    builtin = [n for n, (cls, _) in BUILTIN_LOSSES.items() if kind is None or kind in cls.kinds]
    return builtin + (metric_loss_names() if kind in (None, "labeled") else [])


def _kinds_of(module: nn.Module) -> tuple[str, ...]:
    from pytorch_metric_learning.losses import BaseLossWrapper, BaseMetricLossFunction, MultipleLosses

    if isinstance(module, (BaseMetricLossFunction, BaseLossWrapper, MultipleLosses)):
        return ("labeled",)
    return tuple(getattr(module, "kinds", TRAIN_KINDS))


def _check_fits(name: str, kinds: tuple[str, ...], kind: str) -> None:
    if kind not in kinds:
        needs = " or ".join(_KIND_DATA[k] for k in kinds)
        raise ValueError(
            f"loss {name} needs {needs} but the data is {kind}; losses for {kind} data: {', '.join(loss_names(kind))}"
        )


def _wrap(module: nn.Module, kind: str, miner: str | nn.Module | None) -> Loss:
    """A loss object as a :class:`Loss`; labeled-data objects are called through :class:`MetricLoss`."""
    if isinstance(module, Loss):
        _check_fits(module.name, (module.kind,), kind)
        return module
    name = type(module).__name__
    _check_fits(name, _kinds_of(module), kind)
    if isinstance(module, MetricLoss) and miner is not None:
        raise ValueError("this MetricLoss was built already: give its miner to build_metric_loss")
    if kind == "labeled" and not isinstance(module, MetricLoss):
        module = MetricLoss(module, None if miner is None else build_miner(miner))
    return Loss(module, name=name, kind=kind)


def build_loss(
    name_or_module: str | nn.Module | None,
    *,
    kind: str,
    task: str,
    embedding_size: int,
    num_classes: int | None = None,
    miner: str | nn.Module | None = None,
    **kwargs: Any,
) -> Loss:
    """A :class:`Loss` for ``kind`` data ("pairs", "labeled", "scored") and a model of ``task``.

    ``name_or_module``: a built-in name or alias, a pytorch-metric-learning loss class name
    (case-insensitive, "Loss" optional), a loss object (a PML loss, one of this package's, a
    :class:`Loss`, or any ``nn.Module`` called as in the table of the package docstring), or
    None for :func:`default_loss`. ``kwargs`` go to the loss's constructor; ``miner`` (a PML
    miner name or object) and ``num_classes`` apply to labeled data. A user's module for labeled
    data gets the embeddings and labels gathered over ranks; for pairs or scored data it sees
    the local batch only.
    """
    _check_kind_task(kind, task)
    if miner is not None and kind != "labeled":
        raise ValueError(f"miner= applies to losses for labeled data only; the data is {kind}")
    if name_or_module is None:
        name_or_module = default_loss(kind, task)
    if isinstance(name_or_module, nn.Module):
        if kwargs:
            raise ValueError("loss options apply only when the loss is given by name, not to a loss object")
        return _wrap(name_or_module, kind, miner)
    if not isinstance(name_or_module, str):
        raise TypeError(f"loss must be a name, an nn.Module or None, got {type(name_or_module).__name__}")
    builtin = {name_key(key, "loss"): name for name, (_, aliases) in BUILTIN_LOSSES.items() for key in (name, *aliases)}
    key = name_key(name_or_module, "loss")
    if key == name_key(MatryoshkaLoss.__name__, "loss"):
        options = {"kind": kind, "task": task, "embedding_size": embedding_size, "num_classes": num_classes, "miner": miner}
        return _matryoshka(options, **kwargs)
    if key in builtin:
        name = builtin[key]
        cls = BUILTIN_LOSSES[name][0]
        _check_fits(name, cls.kinds, kind)
        if issubclass(cls, ClipLoss) and task != "text-to-image":
            raise ValueError(
                f"ClipLoss learns the temperature of a two-tower text-to-image model; for {task} use MultipleNegativesRankingLoss (symmetric=True)"
            )
        return Loss(cls(**kwargs), name=name, kind=kind)
    pml = {name_key(n, "loss"): n for n in metric_loss_names()}
    if key not in pml:
        keys = {**builtin, **pml}
        hint = (
            f"For pairs data: {', '.join(loss_names('pairs'))}; for scored data: {', '.join(loss_names('scored'))}; "
            "for labeled data: the pytorch-metric-learning losses."
        )
        raise unknown_name("loss", name_or_module, keys, loss_names(), hint=hint)
    _check_fits(pml[key], ("labeled",), kind)
    loss = build_metric_loss(pml[key], embedding_size=embedding_size, num_classes=num_classes, miner=miner, **kwargs)
    return Loss(loss, name=pml[key], kind=kind)


def _matryoshka(
    options: dict[str, Any],
    *,
    matryoshka_dims: Any = None,
    matryoshka_weights: Any = None,
    loss: str | nn.Module | None = None,
    **inner_options: Any,
) -> MatryoshkaLoss:
    """``MatryoshkaLoss`` by name: ``loss`` (default: by data kind) built with ``inner_options``, then wrapped."""
    if matryoshka_dims is None:
        raise OptionError("MatryoshkaLoss needs matryoshka_dims=, e.g. (384, 256, 128, 64), largest first")
    inner = build_loss(loss, **options, **inner_options)
    return MatryoshkaLoss(inner, matryoshka_dims, matryoshka_weights, output_dim=options["embedding_size"])
