"""What every loss shares: fp32 computation, name lookup, and the uniform :class:`Loss` wrapper."""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from finetuner.errors import UnknownNameError

TRAIN_KINDS = ("pairs", "labeled", "scored")
F = TypeVar("F", bound=Callable[..., Any])


def fp32(forward: F) -> F:
    """Run a loss ``forward`` in fp32: floating tensor arguments cast with ``.float()``, autocast off."""

    def cast(value: Any) -> Any:
        return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    @functools.wraps(forward)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        args = tuple(cast(a) for a in args)
        kwargs = {k: cast(v) for k, v in kwargs.items()}
        device = next(a.device.type for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        with torch.autocast(device_type=device, enabled=False):
            return forward(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def name_key(name: str, suffix: str) -> str:
    """Lower case, letters and digits only, without a trailing ``suffix`` ("loss", "miner")."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key[: -len(suffix)] if key.endswith(suffix) and key != suffix else key


def unknown_name(what: str, name: str, keys: Mapping[str, str], valid: Iterable[str], hint: str = "") -> UnknownNameError:
    """An :class:`UnknownNameError` whose close matches also ignore case, punctuation and suffixes."""
    valid = list(valid)
    error = UnknownNameError(what, name, valid, hint=hint)
    if error.close_matches:
        return error
    suffix = what.split()[-1]
    close = list(dict.fromkeys(keys[k] for k in difflib.get_close_matches(name_key(name, suffix), keys, n=5, cutoff=0.6)))
    if not close:
        return error
    error = UnknownNameError(what, name, valid, hint=f"Did you mean: {', '.join(close)}? {hint}".strip())
    error.close_matches = close
    return error


def takes_input(module: nn.Module, name: str) -> bool:
    """Whether the module's forward has a parameter ``name`` (``logit_scale``: CLIP and SigLIP; ``logit_bias``: SigLIP)."""
    return name in inspect.signature(module.forward).parameters


def negatives_refused(name: str) -> str:
    """Why hard negatives cannot go to loss ``name``, naming the built-in losses that take them."""
    from finetuner.losses import BUILTIN_LOSSES

    able = [n for n, (cls, _) in BUILTIN_LOSSES.items() if "negatives" in inspect.signature(cls.forward).parameters]
    return f"the training data has hard negatives, which {name} cannot use; losses that use them: {', '.join(able)}"


class Loss(nn.Module):
    """A loss ready for the training loop: one call shape for every data kind.

    ``loss(left, right=None, *, labels=None, scores=None, logit_scale=None, logit_bias=None)``
    (also spelt ``loss.compute(...)``) returns an fp32 scalar:

    * ``kind == "pairs"``: ``left`` = query (or text) embeddings, ``right`` = document (or
      image) embeddings, row ``i`` of each is a matching pair. ``logit_scale`` and
      ``logit_bias`` are the model's parameters of those names (:attr:`uses_logit_scale`,
      :attr:`uses_logit_bias` say whether the loss uses them); losses that do not use them
      ignore them, so always pass them.
      ``negatives`` = hard-negative embeddings ``[N * k, dim]``, pair ``i``'s ``k`` in rows
      ``i * k`` onwards, for losses that take them (:attr:`takes_negatives`); ``groups`` = an
      integer per pair, equal for pairs of the same query, whose documents are then never each
      other's negatives (for losses that ``takes("groups")``).
    * ``kind == "labeled"``: ``left`` = item embeddings, ``labels`` = an integer tensor of class
      indices (the same label -> the same index for the whole run).
    * ``kind == "scored"``: ``left``/``right`` = the two sides, ``scores`` = a float tensor.

    A loss with trainable parameters of its own (ArcFace class centres, proxies, ...) has
    ``needs_optimizer == True``: move it to the device (``loss.to(device)``), then give
    ``loss.parameters()`` their own optimizer with learning rate ``model_lr * loss.lr_multiplier``.
    """

    lr_multiplier: float = 100.0

    def __init__(self, module: nn.Module, *, name: str, kind: str) -> None:
        super().__init__()
        self.module = module
        self.name = name
        self.kind = kind
        self.uses_logit_scale = module.uses_logit_scale if isinstance(module, Loss) else takes_input(module, "logit_scale")
        self.uses_logit_bias = module.uses_logit_bias if isinstance(module, Loss) else takes_input(module, "logit_bias")

    def takes(self, argument: str) -> bool:
        """Whether the loss uses the pairs' ``argument`` (``"negatives"`` or ``"groups"``)."""
        if isinstance(self.module, Loss):
            return self.module.takes(argument)
        return argument in inspect.signature(self.module.forward).parameters

    @property
    def takes_negatives(self) -> bool:
        """True when the loss scores queries against hard negatives (``negatives=``) too."""
        return self.takes("negatives")

    @property
    def needs_optimizer(self) -> bool:
        """True when the loss has trainable parameters of its own."""
        return any(p.requires_grad for p in self.parameters())

    def forward(
        self,
        left: torch.Tensor,
        right: torch.Tensor | None = None,
        *,
        labels: torch.Tensor | None = None,
        scores: torch.Tensor | None = None,
        logit_scale: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
        negatives: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if negatives is not None and not (self.kind == "pairs" and self.takes_negatives):
            raise ValueError(negatives_refused(self.name))
        if groups is not None and not (self.kind == "pairs" and self.takes("groups")):
            raise ValueError(f"{self.name} does not take groups= (pairs of the same query)")
        if self.kind == "labeled":
            if labels is None or right is not None:
                raise ValueError(f"{self.name} is for labeled data: call it with the item embeddings and labels=, no right side")
            return self.module(left, labels)
        if right is None:
            raise ValueError(f"{self.name} is for {self.kind} data: it needs the right side's embeddings (right=)")
        if left.shape[0] != right.shape[0]:
            raise ValueError(
                f"left and right embeddings must have the same number of rows, got {left.shape[0]} and {right.shape[0]}"
            )
        if self.kind == "scored":
            if scores is None:
                raise ValueError(f"{self.name} is for scored data: it needs scores=")
            return self.module(left, right, torch.as_tensor(scores, device=left.device))
        extra = {name: value for name, value in (("negatives", negatives), ("groups", groups)) if value is not None}
        if self.uses_logit_scale:
            if logit_scale is None:
                raise ValueError(f"{self.name} needs the model's logit_scale= (two-tower models have one)")
            extra["logit_scale"] = logit_scale
        if self.uses_logit_bias:
            if logit_bias is None:
                raise ValueError(f"{self.name} needs the model's logit_bias= (model.add_logit_bias() gives it one)")
            extra["logit_bias"] = logit_bias
        return self.module(left, right, **extra)

    def compute(self, left: torch.Tensor, right: torch.Tensor | None = None, **inputs: torch.Tensor | None) -> torch.Tensor:
        """The same as calling the loss (the keyword ``inputs`` of :meth:`forward`); see the class docstring."""
        return self(left, right, **inputs)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}"
