"""Gathering a batch across ``torch.distributed`` ranks with gradients, for losses over the global batch.

The convention every loss here follows: under DDP, gradients are *averaged* over ranks, so
the objective actually optimised is the mean over ranks of what each rank's loss returns.
Each loss therefore returns its share such that ``mean over ranks == the loss of the global
batch computed in one process``:

* in-batch negatives and CLIP score *local* rows against the *global* batch and return
  ``sum of local row losses * world_size / global_size`` (:meth:`GlobalBatch.share`);
* losses over the whole batch (CoSENT, cosine MSE, pytorch-metric-learning) compute the
  global loss on every rank (the same value everywhere).

For that to hold, the backward of the gather *sums* the gradient of the gathered tensor over
ranks before each rank keeps the rows of its own part (as ``torch.distributed.nn.all_gather``
does): rank ``r``'s embeddings then receive ``sum over ranks s of d loss_s / d emb_r``, and
DDP's average turns that into the gradient of the mean. Ranks may hold different numbers of
rows (a short last batch); every rank must call the loss, since it communicates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 (sizes may differ by rank); backward sums over ranks, keeps local rows."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        longest = max(sizes)
        padded = tensor.contiguous()
        if tensor.shape[0] < longest:
            padded = tensor.new_zeros((longest, *tensor.shape[1:]))
            padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


class GlobalBatch(NamedTuple):
    """Tensors concatenated over ranks in rank order, and where this rank's rows sit in them."""

    tensors: list[torch.Tensor]
    offset: int
    size: int
    world_size: int

    def share(self, local_sum: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global mean: ``local_sum * world_size / size``.

        Averaged over ranks this is ``(sum over all rows) / size``, the single-process mean,
        even when ranks hold different numbers of rows.
        """
        return local_sum * (self.world_size / self.size)


def gather_batch(*tensors: torch.Tensor) -> GlobalBatch:
    """Gather tensors sharing their first dimension from every rank (one size exchange for all).

    Outside a multi-rank process group this returns the tensors themselves.
    """
    rows = tensors[0].shape[0]
    if any(t.shape[0] != rows for t in tensors):
        raise ValueError(f"tensors to gather must have the same number of rows, got {[t.shape[0] for t in tensors]}")
    if not is_distributed():
        return GlobalBatch(list(tensors), 0, rows, 1)
    world_size, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([rows], device=tensors[0].device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    gathered = [_GatherRows.apply(t, counts, rank) for t in tensors]
    return GlobalBatch(gathered, sum(counts[:rank]), sum(counts), world_size)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0; gradients flow back to the local part.

    The backward sums the incoming gradient over ranks (see the module docstring for why).
    Identity when ``torch.distributed`` is not initialised or has one rank.
    """
    return gather_batch(tensor).tensors[0]
