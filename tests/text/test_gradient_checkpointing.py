"""gradient_checkpointing=True on a Hugging Face text tower: the same embeddings and gradients, less memory kept."""

from __future__ import annotations

import finetuner
from finetuner.training.callbacks import Callback
from tests.core.helpers import assert_checkpointing_changes_nothing

TEXTS = ["hello world", "a short query", "the longer document text of the search"]


def checkpointing(model: finetuner.EmbeddingModel) -> bool:
    return any(getattr(module, "gradient_checkpointing", False) for module in model.tower().encoder.modules())


def test_checkpointing_changes_neither_embeddings_nor_gradients(tiny_folder):
    model = finetuner.build_model(f"hf:{tiny_folder}")
    assert_checkpointing_changes_nothing(model, TEXTS)  # transformers checkpoints in training mode only, dropout on
    model.tower().set_gradient_checkpointing(True)
    assert checkpointing(model)


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
        f"hf:{tiny_folder}",
        pairs,
        epochs=1,
        batch_size=4,
        gradient_checkpointing=True,
        output_dir=None,
        verbose=False,
        callbacks=[watch],
    )
    assert watch.seen == [True, True] and not checkpointing(model)
