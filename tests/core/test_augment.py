"""fit(augment=...): off by default, refused where no image tower augments; per-item seeds."""

from __future__ import annotations

import logging

import pytest

import finetuner
from finetuner.training.augment import item_seeds
from tests.core.helpers import coloured_images, topic_pairs


@pytest.mark.parametrize("augment", [True, {"scale": (0.5, 1.0)}])
def test_augment_with_a_text_model_is_refused_naming_the_option(augment):
    with pytest.raises(
        finetuner.TrainingError, match=r"augment=.* transforms images, and this text-to-text model trains no image tower"
    ):
        finetuner.fit("dummy-text", topic_pairs(16), batch_size=8, augment=augment, output_dir=None, verbose=False)


def test_augmentation_is_off_by_default_and_a_tower_without_it_refuses_it_when_asked(caplog):
    images, labels = coloured_images(n_per_class=4)
    data = list(zip(images, labels, strict=True))
    options = {"kind": "labeled", "batch_size": 8, "samples_per_class": 2, "output_dir": None, "verbose": False}
    with caplog.at_level(logging.INFO, logger="finetuner"):
        finetuner.fit("dummy-image", data, **options)
    assert "augment" not in caplog.text  # off by default: not even looked for
    with pytest.raises(
        finetuner.TrainingError, match="augment=True: the image tower TinyCNNTower has no training-time augmentation"
    ):
        finetuner.fit("dummy-image", data, augment=True, **options)


def test_item_seeds_depend_on_seed_epoch_side_and_index_alone():
    seeds = item_seeds(0, 0, 0, [3, 5])
    assert seeds == item_seeds(0, 0, 0, [3, 5]) and item_seeds(0, 0, 0, [5]) == seeds[1:]
    assert len({*seeds, *item_seeds(1, 0, 0, [3]), *item_seeds(0, 1, 0, [3]), *item_seeds(0, 0, 1, [3])}) == 5
