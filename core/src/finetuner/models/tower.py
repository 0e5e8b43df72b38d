"""The unit a plugin builds: one encoder that owns its preprocessing."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from finetuner.models._inference import run_encoder

MODALITIES = ("text", "image")
# a tower's training-time augmentation: (items, one seed per item) -> features, as preprocess gives them
Augmentation = Callable[[Sequence[Any], Sequence[int]], dict[str, torch.Tensor]]


class Tower(nn.Module):
    """Raw items in, ``[N, output_dim]`` embeddings out, in two steps.

    Subclasses set ``modality`` (``"text"`` or ``"image"``) and ``output_dim`` and implement
    :meth:`preprocess` (items -> dict of CPU tensors; no autograd) and :meth:`forward`
    (that dict, moved to the device -> embeddings). :meth:`forward` calls its encoder (the
    module holding the weights) through :meth:`run_encoder`, which gives the tower bf16
    inference at no cost to the implementer.

    Class attributes:

    - ``channels_last``: CNN towers set it so the runtime converts them to that memory
      format, which is faster on CPU.
    - ``bf16_autocast``: whether the encoder's bf16 inference copy runs inside the caller's
      autocast (True, the default: the ops autocast keeps in fp32, such as softmax and
      LayerNorm, stay fp32) or with autocast off (every op in bf16, faster). Set it False
      only where quality was checked that way, as the Hugging Face text tower's was.
    - ``export_formats``: the other libraries' formats :meth:`export_files` writes
      (``"sentence-transformers"``, ``"transformers"``, ``"timm"``; see :mod:`finetuner.ecosystem`).
    - ``base_model``: the Hugging Face Hub id of the pretrained weights the tower started
      from, or None; model cards name it. Set it when building with ``pretrained=True``.
    - ``leaves_parameters_unused``: True for a tower some of whose trainable weights get no
      gradient in a step by design (a conditional branch); DDP then looks for unused
      parameters for that model only, at the cost of a graph traversal per step.
    - ``default_loss``: the loss ``fit`` picks for pairs data when every tower of the model
      names the same one (SigLIP towers name ``"SigLIPLoss"``); None leaves the task's default.
    - ``lora_targets``: the linear layers ``fit(..., lora=True)`` adapts, by the last part of
      their names (``("query", "value")``) or a dotted suffix; None finds them for the
      architectures :mod:`finetuner.lora` knows (BERT-like, DistilBERT, CLIP, SigLIP, timm ViTs, ...).
    """

    modality: str = "text"
    output_dim: int = 0
    channels_last: bool = False
    bf16_autocast: bool = True
    export_formats: tuple[str, ...] = ()
    base_model: str | None = None
    default_loss: str | None = None
    leaves_parameters_unused: bool = False
    lora_targets: tuple[str, ...] | None = None

    def preprocess(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def run_encoder(self, module: nn.Module, /, *args: Any, **kwargs: Any) -> Any:
        """``module(*args, **kwargs)``, or under bf16 inference the same call on a bf16 copy of ``module``.

        Under bf16 inference (``encode`` or ``evaluate`` in bf16: inference mode with bf16
        autocast) a cached, eval-mode bf16 copy of ``module`` runs instead, made once by
        :meth:`prepare_bf16_copy` and remade when a weight changes; autocast would cast every
        weight again in each batch. Floating-point tensors in the arguments go in as bf16 and
        those in the result come back fp32. The copy is never saved, and a call with gradients
        (training) frees it. Pass the same module each call: a tower has one copy.
        """
        return run_encoder(self, module, args, kwargs)

    def prepare_bf16_copy(self, module: nn.Module, device_type: str) -> nn.Module:
        """Adapt the fp32 eval-mode copy of an encoder before it is cast to bf16 for ``device_type`` (default: as is)."""
        return module

    def augmentation(self, options: Mapping[str, Any]) -> Augmentation | None:
        """The tower's training-time augmentation, or None (the default): it has none.

        Training calls it once, with the user's options (``fit(augment={...})``; empty for
        ``augment=True``), and refuses ``augment`` for a tower that returns None. It returns a
        picklable callable ``(items, seeds) -> features``: :meth:`preprocess` with random
        transforms, item ``i``'s drawn from ``seeds[i]`` alone, so that the same seed gives the
        same features in any DataLoader worker. Refuse unknown options with a
        :class:`finetuner.FinetunerError` naming ``augment``.
        """
        return None

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute the encoder's activations during backward instead of keeping them (``fit(gradient_checkpointing=True)``).

        Towers whose library supports it override this; the default refuses.
        """
        from finetuner.errors import OptionError

        raise OptionError(
            f"gradient_checkpointing: {type(self).__name__} (the {self.modality} tower) does not support it; "
            "Hugging Face text towers, timm image towers and the CLIP, SigLIP and open_clip transformer towers do"
        )

    def item_cost(self, item: Any) -> int:
        """A cheap size estimate used to batch items of similar size together (0: no sorting)."""
        return 0

    def batches(self, items: Sequence[Any], batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """``(positions in items, preprocessed features)`` for every inference batch of ``items``.

        Items of similar :meth:`item_cost` share a batch, so little padding is computed. A tower
        whose size estimate costs real work (tokenizing) overrides this to do that work once.
        """
        order = sorted(range(len(items)), key=lambda i: -self.item_cost(items[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            yield chunk, self.preprocess([items[i] for i in chunk])

    def save_files(self, directory: Path) -> None:
        """Write what rebuilding this tower offline needs besides its weights (tokenizer, config)."""

    def export_files(self, directory: Path, fmt: str) -> dict[str, torch.Tensor]:
        """Write this tower in another library's format ``fmt`` (one of ``export_formats``); return its weights.

        Write the config and preprocessing files that library reads into ``directory`` and return
        the weights under the names its loader expects: finetuner writes them, with the other
        tower's and the head's, to ``directory/model.safetensors``. :mod:`finetuner.ecosystem`
        says what each format holds.
        """
        raise NotImplementedError(f"{type(self).__name__} does not export to {fmt}")
