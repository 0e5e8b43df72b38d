"""The plugin's hook: registers ``char-trigrams``. Imports only finetuner, so listing models stays fast."""

from __future__ import annotations

from collections.abc import Callable

import finetuner

DIM = 64  # the size of the embedding the tower returns


@finetuner.hookimpl
def finetuner_register_backbones(register: Callable[[finetuner.BackboneSpec], None]) -> None:
    register(
        finetuner.BackboneSpec(
            name="char-trigrams",
            task="text-to-text",
            output_dim=DIM,
            architecture="bag of character trigrams",
            description="Hashed character trigrams, learned from scratch (example plugin)",
            build="finetuner_trigram.tower:build",  # imported only when the model is built
        )
    )
