"""Pre-fill caches in the layouts the real loaders read, so tests run the real offline paths.

``hub_snapshot`` gives the snapshot folder of a repo id in a Hugging Face hub-layout cache
(``HF_HOME/hub/models--org--name/snapshots/<rev>/``); save a tiny random model and its
tokenizer there with ``save_pretrained`` and ``from_pretrained("org/name")`` finds them with
``HF_HUB_OFFLINE=1``. huggingface_hub reads ``HF_HOME``/``HF_HUB_CACHE`` when it is imported,
so a test must also patch ``huggingface_hub.constants.HF_HUB_CACHE`` (see the plugins' fixtures).
"""

from __future__ import annotations

from pathlib import Path

REVISION = "0" * 40


def hub_snapshot(hf_home: Path, repo_id: str) -> Path:
    """Create (if needed) and return the snapshot folder for ``repo_id`` under ``hf_home``."""
    repo = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def torch_checkpoint_path(torch_home: Path, file_name: str) -> Path:
    """Where torchvision looks for an official weights file (``TORCH_HOME/hub/checkpoints``)."""
    folder = Path(torch_home) / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / file_name
