"""Embedding conversion: classifier removed, average or GeM pooling, eval determinism, channels_last."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("finetuner_vision", reason="finetuner-vision is not installed")

import finetuner  # noqa: E402
from finetuner.models import GeM  # noqa: E402
from finetuner.runtime import prepare  # noqa: E402


def test_torchvision_classifier_is_removed_by_attribute() -> None:
    resnet = finetuner.build_model("resnet50", pretrained=False).tower().backbone
    effnet_model = finetuner.build_model("efficientnet_b0", pretrained=False, pooling="gem")
    effnet = effnet_model.tower().backbone
    assert isinstance(resnet.fc, nn.Identity)
    assert isinstance(resnet.avgpool, nn.AdaptiveAvgPool2d)
    assert isinstance(effnet.classifier, nn.Identity)
    assert isinstance(effnet.avgpool, GeM)
    assert "towers.image.backbone.avgpool.p" in effnet_model.state_dict()


def test_gem_exponent_is_learnable() -> None:
    model = finetuner.build_model("timm/test_resnet", pretrained=False, pooling="gem").train()
    model({"pixel_values": torch.rand(2, 3, 64, 64)}).sum().backward()
    p = model.tower().pool.p
    assert p.requires_grad and p.grad is not None and p.grad.abs() > 0


def test_timm_gem_with_p_one_equals_average_pooling() -> None:
    """GeM sits on the map the model's average pool would see: with p=1 it is that average."""
    avg = finetuner.build_model("timm/test_resnet", pretrained=False, normalize=False).eval()
    gem = finetuner.build_model("timm/test_resnet", pretrained=False, normalize=False, pooling="gem").eval()
    assert isinstance(gem.tower().pool, GeM)
    missing, unexpected = gem.load_state_dict(avg.state_dict(), strict=False)
    assert missing == ["towers.image.pool.p"] and unexpected == []
    pixels = {"pixel_values": torch.rand(2, 3, 96, 96)}
    with torch.no_grad():
        gem.tower().pool.p.fill_(1.0)
        torch.testing.assert_close(gem(pixels), avg(pixels), atol=1e-5, rtol=1e-4)
        gem.tower().pool.p.fill_(3.0)
        assert not torch.allclose(gem(pixels), avg(pixels), atol=1e-3)


def test_timm_gem_handles_channels_last_feature_maps() -> None:
    """MambaOut (like swin) returns NHWC maps; GeM must pool over H and W, giving the spec dimension."""
    spec = finetuner.get_spec("timm/test_mambaout")
    tower = finetuner.build_model(spec.name, pretrained=False, pooling="gem").tower().eval()
    assert tower.channels_axis == -1
    pixels = {"pixel_values": torch.rand(1, 3, 160, 160)}
    with torch.inference_mode():
        pooled = tower(pixels)
        feature_map = tower.backbone(pixels["pixel_values"])
    assert pooled.shape == (1, spec.output_dim)
    torch.testing.assert_close(pooled, tower.pool(feature_map.permute(0, 3, 1, 2)))


def test_gem_is_refused_for_token_outputs() -> None:
    with pytest.raises(finetuner.UnknownNameError, match="timm/test_vit returns tokens"):
        finetuner.build_model("timm/test_vit", pretrained=False, pooling="gem")


def test_unknown_pooling_is_named() -> None:
    with pytest.raises(finetuner.UnknownNameError, match="unknown pooling 'max'"):
        finetuner.build_model("efficientnet_b0", pretrained=False, pooling="max")


def test_eval_embeddings_are_deterministic(rgb_array) -> None:
    model = finetuner.build_model("timm/test_efficientnet", pretrained=False)
    model.train()  # encode switches to eval and back
    first = finetuner.encode(model, [rgb_array, rgb_array[::-1]], precision="fp32")
    second = finetuner.encode(model, [rgb_array[::-1], rgb_array], precision="fp32")
    assert model.training
    np.testing.assert_array_equal(first, second[::-1])
    assert not np.allclose(first[0], first[1])


def test_channels_last_model_gives_the_same_embeddings() -> None:
    model = finetuner.build_model("timm/test_resnet", pretrained=False).eval()
    tower = model.tower()
    assert tower.channels_last
    converted = prepare(copy.deepcopy(model), torch.device("cpu"))
    pixels = {"pixel_values": torch.rand(2, 3, 96, 96)}
    with torch.inference_mode():
        torch.testing.assert_close(converted(pixels), model(pixels), atol=1e-4, rtol=1e-4)
    assert converted.tower()._weights_channels_last() and not tower._weights_channels_last()


def test_vision_transformers_are_not_converted_to_channels_last() -> None:
    assert not finetuner.build_model("timm/test_vit", pretrained=False).tower().channels_last


def _lowest_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).min())  # embeddings are unit length


def test_bf16_inference_runs_a_folded_bf16_copy_that_follows_weight_changes() -> None:
    torch.manual_seed(0)
    model = finetuner.build_model("timm/test_resnet", pretrained=False)
    tower = model.tower()
    for norm in (m for m in tower.modules() if isinstance(m, nn.BatchNorm2d)):  # running stats far from 0/1
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5)
    images = [np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8) for i in range(4)]

    before = finetuner.encode(model, images, precision="bf16")
    assert _lowest_cosine(before, finetuner.encode(model, images, precision="fp32")) > 0.99
    _, copy_ = tower.__dict__["_bf16_copy"]
    assert {p.dtype for p in copy_.parameters()} == {torch.bfloat16}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy_.modules())  # folded into the convolutions
    assert not any("_bf16" in k for k in model.state_dict())  # never saved
    for norm in (m for m in tower.modules() if isinstance(m, nn.BatchNorm2d)):  # in place, as training does
        norm.running_mean.uniform_(-1, 1)
    after = finetuner.encode(model, images, precision="bf16")
    assert _lowest_cosine(after, finetuner.encode(model, images, precision="fp32")) > 0.99
    assert _lowest_cosine(after, before) < 0.99
    model.train()
    model(tower.preprocess(images)).sum().backward()  # a training step frees the copy
    assert "_bf16_copy" not in tower.__dict__


def test_unfoldable_backbones_still_run_in_bf16(caplog) -> None:
    from finetuner_vision.tower import fold_batch_norm

    class Untraceable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: symbolic tracing fails
                x = -x
            return self.norm(self.conv(x))

    module = Untraceable().eval()
    with caplog.at_level("DEBUG", logger="finetuner"):
        assert fold_batch_norm(module) is module
    assert "BatchNorm folding skipped for Untraceable" in caplog.text


def test_compiled_bf16_copy_freezes_weights_yet_follows_weight_changes() -> None:
    torch.manual_seed(0)
    model = finetuner.build_model("timm/test_resnet", pretrained=False)
    tower = model.tower()
    images = [np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8) for i in range(4)]

    def both() -> tuple[np.ndarray, np.ndarray]:
        compiled = finetuner.encode(model, images, precision="bf16", compile=True)
        assert isinstance(tower.__dict__["_bf16_copy"][1], torch._dynamo.eval_frame.OptimizedModule)
        return compiled, finetuner.encode(model, images, precision="bf16")

    compiled, eager = both()
    assert _lowest_cosine(compiled, eager) > 0.999
    with torch.no_grad():  # frozen weights must not outlive an in-place update
        for p in tower.parameters():
            p.add_(torch.randn_like(p))
    changed, eager = both()
    assert _lowest_cosine(changed, eager) > 0.999 and _lowest_cosine(changed, compiled) < 0.99
