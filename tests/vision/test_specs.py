"""The vision plugin's specs: listing, true dimensions, timm/<name> resolution."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("finetuner_vision", reason="finetuner-vision is not installed")

import finetuner  # noqa: E402
from finetuner.cli import main  # noqa: E402

# The numbers, kept here so a wrong table entry cannot pass by agreeing with itself.
TRUE_DIMS = {
    "resnet50": 2048,
    "resnet152": 2048,
    "efficientnet_b0": 1280,
    "efficientnet_b4": 1792,
    "timm/convnext_tiny": 768,
    "timm/vit_small_patch16_224": 384,
}


def vision_specs() -> list[finetuner.BackboneSpec]:
    from finetuner import plugins

    plugins.reset()
    return [s for s in finetuner.list_models() if s.plugin == "vision"]


def test_listing_imports_no_deep_learning_library() -> None:
    code = (
        "import sys, finetuner\n"
        "names = [s.name for s in finetuner.list_models('image-to-image')]\n"
        "assert {'resnet50', 'efficientnet_b4', 'timm/convnext_tiny'} <= set(names), names\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'timm', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cli_lists_vision_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--task", "image-to-image"]) == 0
    table = capsys.readouterr().out
    for name in (
        "resnet50",
        "resnet152",
        "efficientnet_b0",
        "efficientnet_b4",
        "timm/convnext_tiny",
        "timm/vit_small_patch16_224",
    ):
        assert name in table
    assert "Pretrained on ImageNet" in table
    assert "any timm/<name> builds" in table


def test_specs_match_the_true_dims() -> None:
    specs = {s.name: s for s in vision_specs()}
    assert {n: specs[n].output_dim for n in TRUE_DIMS} == TRUE_DIMS
    assert all(s.task == "image-to-image" for s in specs.values())
    assert {specs[n].architecture for n in ("resnet50", "resnet152", "efficientnet_b0", "efficientnet_b4")} == {"CNN"}
    assert all(specs[n].description == "Pretrained on ImageNet" for n in ("resnet50", "efficientnet_b4"))


@pytest.fixture(scope="module")
def built_models() -> dict[str, tuple[finetuner.BackboneSpec, torch.Tensor]]:
    """Every registered vision model, built once with random init and run on one tiny input."""
    results = {}
    for spec in vision_specs():
        model = finetuner.build_model(spec.name, pretrained=False).eval()
        tower = model.tower()
        size = 224 if spec.architecture == "transformer" else 64  # ViTs need their native size
        with torch.inference_mode():
            results[spec.name] = (spec, tower({"pixel_values": torch.rand(2, 3, size, size)}))
    return results


def test_every_registered_model_returns_its_spec_dim(built_models) -> None:
    assert len(built_models) >= 9
    for name, (spec, embeddings) in built_models.items():
        assert embeddings.shape == (2, spec.output_dim), name
        assert torch.isfinite(embeddings).all(), name


def test_registered_timm_dims_agree_with_the_resolver() -> None:
    from finetuner_vision.timm_models import timm_info

    for spec in vision_specs():
        if spec.name.startswith("timm/"):
            assert timm_info(spec.name.removeprefix("timm/")) == (spec.output_dim, spec.architecture), spec.name


@pytest.mark.parametrize(
    ("name", "dim", "architecture"),
    [
        ("timm/mobilenetv3_large_100", 1280, "CNN"),  # its head maps 960 channels to 1280 after pooling
        ("timm/swin_tiny_patch4_window7_224", 768, "transformer"),
        ("timm/test_vit.r160_in1k", 64, "transformer"),  # a pretrained tag
        ("timm/resnest14d", 2048, "CNN"),  # batch norm on a 1x1 map: sized in eval mode
    ],
)
def test_any_timm_name_resolves_with_its_true_dim(name: str, dim: int, architecture: str) -> None:
    spec = finetuner.get_spec(name)
    assert (spec.name, spec.output_dim, spec.architecture, spec.plugin) == (name, dim, architecture, "vision")


def test_a_resolved_timm_model_builds_to_its_spec_dim() -> None:
    spec = finetuner.get_spec("timm/test_efficientnet")
    model = finetuner.build_model(spec.name, pretrained=False).eval()
    with torch.inference_mode():
        assert model.tower()({"pixel_values": torch.rand(1, 3, 64, 64)}).shape == (1, spec.output_dim)


def test_unknown_timm_name_suggests_close_names() -> None:
    with pytest.raises(finetuner.UnknownNameError, match="timm/convnxt_tiny") as error:
        finetuner.get_spec("timm/convnxt_tiny")
    assert "timm/convnext_tiny" in error.value.close_matches
    assert "Did you mean" in str(error.value)
    with pytest.raises(finetuner.UnknownNameError, match="timm/test_vit.r160_in1kk") as error:
        finetuner.get_spec("timm/test_vit.r160_in1kk")  # a tag timm does not have
    assert "timm/test_vit.r160_in1k" in error.value.close_matches


def test_timm_models_without_a_pooled_output_are_refused_clearly() -> None:
    with pytest.raises(
        finetuner.PluginError, match=r"timm/mobilenetv5_300m_enc is not supported: .* returns \[1, 2048, 16, 16\]"
    ):
        finetuner.get_spec("timm/mobilenetv5_300m_enc")


def test_names_outside_the_timm_family_are_not_resolved_by_the_plugin() -> None:
    from finetuner_vision import plugin

    assert plugin.finetuner_resolve_backbone("hf:some/model") is None
