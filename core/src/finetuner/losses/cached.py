"""GradCache: an in-batch loss's gradients over a large batch, holding activations for one mini-batch at a time.

In-batch negatives get better with the batch size, but a plain step holds every example's
activations until backward. :func:`cached_backward` (Gao et al., 2021, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup") instead:

1. embeds the batch mini-batch by mini-batch without autograd, keeping only the embeddings
   and the random state each mini-batch started from;
2. computes the loss on the whole batch's embeddings and backpropagates it to those
   embeddings alone (and to parameters the loss itself uses, such as CLIP's temperature);
3. embeds each mini-batch again, with autograd and its random state restored (the same
   dropout masks), and backpropagates the cached embedding gradients through it.

The parameters' ``.grad`` then hold the gradients of the full-batch loss, at the cost of a
second forward. Under DDP the loss gathers embeddings across ranks as usual; only the last
mini-batch's forward goes through the DDP wrapper (see :func:`cached_backward`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from finetuner.losses.clip import ClipLoss
from finetuner.losses.in_batch import MultipleNegativesRankingLoss


class RandomState:
    """The CPU random state, and ``device``'s when it is a GPU, as they are when made."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block from this state; the random state outside is left as it was."""
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def mini_batches(size: int, mini_batch_size: int) -> list[slice]:
    """``range(size)`` cut into consecutive slices of ``mini_batch_size`` (the last may be shorter)."""
    if mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be at least 1, got {mini_batch_size}")
    return [slice(start, min(start + mini_batch_size, size)) for start in range(0, size, mini_batch_size)]


def cached_backward(
    embed: Callable[[int, bool], Sequence[torch.Tensor]],
    chunks: int,
    compute_loss: Callable[[list[torch.Tensor]], torch.Tensor],
    *,
    device: torch.device,
    scale: float = 1.0,
) -> torch.Tensor:
    """One GradCache step: accumulate ``scale`` times the gradient of the full-batch loss into ``.grad``.

    ``embed(i, sync)`` embeds mini-batch ``i`` of ``chunks`` and returns one tensor per side
    (queries, documents, negatives, ...). It is called ``2 * chunks`` times: first without
    autograd, then with it, in the same order; ``sync`` is True only on the very last call,
    the one whose backward may all-reduce gradients (call the DDP wrapper then, the bare
    module otherwise; no-sync forwards through the bare module also keep DDP's per-forward
    buffer broadcasts equal in number on every rank). ``compute_loss`` gets each side's
    embeddings of the whole batch, concatenated in mini-batch order, and returns the loss.
    Returns the loss, detached.
    """
    if chunks < 1:
        raise ValueError(f"a batch needs at least one mini-batch, got chunks={chunks}")
    states: list[RandomState] = []
    cached: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for chunk in range(chunks):
            states.append(RandomState(device))
            cached.append([t.detach() for t in embed(chunk, False)])
    sides = [torch.cat(parts).requires_grad_() for parts in zip(*cached, strict=True)]
    loss = compute_loss(sides)
    (loss * scale).backward()
    gradients = [
        side.grad.split([len(part[number]) for part in cached]) if side.grad is not None else None
        for number, side in enumerate(sides)
    ]
    del sides, cached
    for chunk, state in enumerate(states):
        with state.replay():
            outputs = embed(chunk, chunk == chunks - 1)
        pairs = [
            (out, grads[chunk]) for out, grads in zip(outputs, gradients, strict=True) if grads is not None and out.requires_grad
        ]
        torch.autograd.backward([out for out, _ in pairs], [grad for _, grad in pairs])
    return loss.detach()


class CachedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """:class:`MultipleNegativesRankingLoss` trained by GradCache: the same loss and gradients, with the
    towers run on ``mini_batch_size`` examples at a time (batch memory for a mini-batch's cost)."""

    def __init__(self, scale: float = 20.0, symmetric: bool = False, mini_batch_size: int = 32) -> None:
        super().__init__(scale=scale, symmetric=symmetric)
        self.mini_batch_size = _positive(mini_batch_size)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mini_batch_size={self.mini_batch_size}"


class CachedClipLoss(ClipLoss):
    """:class:`ClipLoss` trained by GradCache, the towers run on ``mini_batch_size`` pairs at a time."""

    def __init__(self, mini_batch_size: int = 32) -> None:
        super().__init__()
        self.mini_batch_size = _positive(mini_batch_size)

    def extra_repr(self) -> str:
        return f"mini_batch_size={self.mini_batch_size}"


def _positive(mini_batch_size: int) -> int:
    if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int) or mini_batch_size < 1:
        raise ValueError(f"mini_batch_size must be a positive integer, got {mini_batch_size!r}")
    return mini_batch_size
