"""Test plugin: two tiny backbones, so tests can train real models in seconds."""

import finetuner


@finetuner.hookimpl
def finetuner_register_backbones(register):
    register(
        finetuner.BackboneSpec(
            name="dummy-text",
            aliases=("dummy-txt",),
            task="text-to-text",
            output_dim=16,
            architecture="bag of character trigrams",
            description="Test backbone",
            build="finetuner_dummy.towers:build_text",
        )
    )
    register(
        finetuner.BackboneSpec(
            name="dummy-image",
            task="image-to-image",
            output_dim=16,
            architecture="CNN",
            description="Test backbone",
            build="finetuner_dummy.towers:build_image",
        )
    )
