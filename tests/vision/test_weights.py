"""Where weights come from: the real offline caches, local files, and fast, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("finetuner_vision", reason="finetuner-vision is not installed")

import finetuner  # noqa: E402
from finetuner_vision import weights as vision_weights  # noqa: E402
from tests.hubcache import hub_snapshot, torch_checkpoint_path  # noqa: E402


def random_torchvision_state(arch: str) -> dict[str, torch.Tensor]:
    from torchvision import models

    torch.manual_seed(0)
    return models.get_model(arch, weights=None).state_dict()


def random_timm_state(name: str) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).state_dict()


def never_probe(*args, **kwargs) -> bool:
    raise AssertionError("the network was used")


def test_torchvision_pretrained_loads_the_official_file_from_torch_home(torch_home: Path, monkeypatch) -> None:
    from torchvision.models import EfficientNet_B0_Weights

    monkeypatch.setattr(vision_weights, "reachable", never_probe)
    state = random_torchvision_state("efficientnet_b0")
    file_name = Path(EfficientNet_B0_Weights.DEFAULT.url).name
    assert file_name == "efficientnet_b0_rwightman-7f5810bc.pth"
    torch.save(state, torch_checkpoint_path(torch_home, file_name))
    backbone = finetuner.build_model("efficientnet_b0").tower().backbone  # pretrained=True is the default
    for key in ("features.0.0.weight", "features.8.1.running_var"):
        torch.testing.assert_close(backbone.state_dict()[key], state[key], rtol=0, atol=0)


def test_torchvision_offline_error_is_fast_and_names_the_alternatives(torch_home: Path, monkeypatch) -> None:
    monkeypatch.setattr(vision_weights, "reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", never_probe)  # no download is even tried
    with pytest.raises(finetuner.ModelNotAvailableError) as error:
        finetuner.build_model("resnet50")
    message = str(error.value)
    assert "not available offline" in message and "resnet50-11ad3fa6.pth" in message
    assert "pretrained=False" in message and "weights=PATH" in message
    assert message.count(". ") == 0  # one sentence


def test_probing_an_unresolvable_host_says_unreachable() -> None:
    assert vision_weights.reachable("https://finetuner-test.invalid/weights.pth", timeout=2.0) is False


def test_timm_pretrained_loads_from_the_hub_cache(hf_home: Path) -> None:
    import timm
    from safetensors.torch import save_file

    hub_id = timm.models.get_pretrained_cfg("test_convnext").hf_hub_id
    assert hub_id == "timm/test_convnext.r160_in1k"
    snapshot = hub_snapshot(hf_home, hub_id)
    state = random_timm_state("test_convnext")
    save_file(state, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps({"architecture": "test_convnext", "num_classes": 1000}))
    backbone = finetuner.build_model("timm/test_convnext").tower().backbone
    for key in ("stem.0.weight", "stages.1.blocks.0.conv_dw.weight"):
        torch.testing.assert_close(backbone.state_dict()[key], state[key], rtol=0, atol=0)


def test_timm_offline_error_is_clear(hf_home: Path) -> None:
    with pytest.raises(
        finetuner.ModelNotAvailableError, match=r"timm/test_convnext\.r160_in1k is not in the Hugging Face cache"
    ) as error:
        finetuner.build_model("timm/test_convnext")
    assert "pretrained=False" in str(error.value) and "weights=PATH" in str(error.value)


def test_timm_unreachable_hub_is_converted(hf_home: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("finetuner_vision.timm_models.reachable", lambda url, timeout=3.0: False)
    with pytest.raises(finetuner.ModelNotAvailableError, match="cannot be reached"):
        finetuner.build_model("timm/test_convnext")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_weights_file_loads(tmp_path: Path, suffix: str) -> None:
    from safetensors.torch import save_file

    state = random_torchvision_state("efficientnet_b0")
    path = tmp_path / f"mine{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    backbone = finetuner.build_model("efficientnet_b0", weights=path, pooling="gem").tower().backbone
    torch.testing.assert_close(
        backbone.state_dict()["features.1.0.block.0.0.weight"], state["features.1.0.block.0.0.weight"], rtol=0, atol=0
    )


def test_headless_weights_file_loads(tmp_path: Path) -> None:
    state = {k: v for k, v in random_timm_state("test_convnext").items() if not k.startswith("head.fc.")}
    path = tmp_path / "headless.pth"
    torch.save(state, path)
    backbone = finetuner.build_model("timm/test_convnext", weights=str(path)).tower().backbone
    torch.testing.assert_close(backbone.state_dict()["head.norm.weight"], state["head.norm.weight"], rtol=0, atol=0)


def test_mismatched_weights_file_names_the_file_and_keys(tmp_path: Path) -> None:
    state = random_timm_state("test_resnet")
    path = tmp_path / "resnet.pth"
    torch.save(state, path)
    with pytest.raises(
        finetuner.DataError, match=r"resnet\.pth does not fit timm/test_convnext: \d+ missing keys: stem\.0\.weight"
    ) as error:
        finetuner.build_model("timm/test_convnext", weights=path)
    assert "unexpected keys: conv1.0.weight" in str(error.value)
    assert "more)" in str(error.value)  # a few keys, not hundreds


def test_mis_shaped_weights_file_names_the_key(tmp_path: Path) -> None:
    state = random_timm_state("test_convnext")
    state["stem.0.weight"] = torch.zeros(1, 3, 4, 4)
    path = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(path))
    with pytest.raises(
        finetuner.DataError, match=r"bad\.safetensors .* 1 shape mismatches: stem\.0\.weight \(file \[1, 3, 4, 4\]"
    ):
        finetuner.build_model("timm/test_convnext", weights=path)


def test_weights_file_errors(tmp_path: Path) -> None:
    with pytest.raises(finetuner.ModelNotAvailableError, match=r"weights file .*absent\.pth .* does not exist"):
        finetuner.build_model("timm/test_convnext", weights=tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(finetuner.DataError, match=r"cannot read weights file .*junk\.pth"):
        finetuner.build_model("timm/test_convnext", weights=tmp_path / "junk.pth")
    torch.save({"epoch": 3}, tmp_path / "checkpoint.pth")
    with pytest.raises(finetuner.DataError, match=r"checkpoint\.pth does not hold a state dict"):
        finetuner.build_model("timm/test_convnext", weights=tmp_path / "checkpoint.pth")
