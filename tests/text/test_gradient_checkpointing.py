"""gradient_checkpointing=True on a Hugging Face text tower: the same embeddings and gradients, less memory kept."""

from __future__ import annotations

import copy

import torch

import finetuner
from finetuner.training.callbacks import Callback

TEXTS = ["hello world", "a short query", "the longer document text of the search"]


def checkpointing(model: finetuner.EmbeddingModel) -> bool:
    return any(getattr(module, "gradient_checkpointing", False) for module in model.tower().encoder.modules())


def embed_and_backward(model: finetuner.EmbeddingModel) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.train()  # transformers checkpoints only in training mode; dropout on, the same seed for both
    torch.manual_seed(0)
    tower = model.tower()
    embeddings = model(tower.preprocess(TEXTS))
    (embeddings * torch.arange(1.0, 1 + embeddings.shape[1])).sum().backward()
    return embeddings.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_checkpointing_changes_neither_embeddings_nor_gradients(tiny_folder):
    plain = finetuner.build_model(f"hf:{tiny_folder}")
    checkpointed = copy.deepcopy(plain)
    checkpointed.tower().set_gradient_checkpointing(True)
    assert checkpointing(checkpointed) and not checkpointing(plain)
    expected, expected_grads = embed_and_backward(plain)
    actual, grads = embed_and_backward(checkpointed)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    assert set(grads) == set(expected_grads)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


class Watch(Callback):
    """Whether checkpointing was on at each step."""

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def on_step_end(self, state) -> None:
        self.seen.append(checkpointing(state.model))


def test_fit_turns_it_on_for_training_and_off_after(tiny_folder):
    pairs = [(f"query {i} hello", f"document {i} world") for i in range(8)]
    watch = Watch()
    model = finetuner.fit(
        f"hf:{tiny_folder}", pairs, epochs=1, batch_size=4, gradient_checkpointing=True, output_dir=None, verbose=False, callbacks=[watch]
    )
    assert watch.seen == [True, True] and not checkpointing(model)
