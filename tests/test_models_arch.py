"""Image architectures: forward and backward on CPU, transfer-learning freezing, summary counts."""

from __future__ import annotations

import pytest
import torch

from tui_trainer.config import ConfigError, ModelConfig
from tui_trainer.engine.models import CNN, ResNet, build_model, count_params, format_summary, layer_summary


def _forward_backward(model: torch.nn.Module, shape: tuple[int, ...], out: int) -> None:
    x = torch.randn(4, *shape)
    y = model(x)
    assert y.shape == (4, out)
    y.sum().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)


@pytest.mark.parametrize("pool", ["max", "avg", "none"])
def test_cnn_blocks_and_head(pool):
    cfg = ModelConfig(arch="cnn", channels=[8, 16], pool=pool, batch_norm=True, dropout=0.1, hidden=[32])
    model = build_model(cfg, (1, 28, 28), 10)
    assert isinstance(model, CNN)
    _forward_backward(model, (1, 28, 28), 10)
    rows = layer_summary(model, (1, 28, 28))
    side = 7 if pool != "none" else 28
    flatten = next(r for r in rows if r.kind == "Flatten")
    assert flatten.output_shape == (16 * side * side,)


def test_cnn_parameter_count_matches_hand_count():
    cfg = ModelConfig(arch="cnn", channels=[4], kernel_size=3, padding=1, pool="max", hidden=[], activation="relu")
    model = build_model(cfg, (1, 8, 8), 3)
    conv = 1 * 4 * 9 + 4
    head = 4 * 4 * 4 * 3 + 3
    assert count_params(model) == (conv + head, conv + head)


def test_too_many_blocks_for_the_image_is_a_config_error():
    with pytest.raises(ConfigError, match="too many blocks"):
        build_model(ModelConfig(arch="cnn", channels=[4, 4, 4], padding=0, stride=2, pool="max"), (1, 8, 8), 2)


def test_resnet_has_skip_connections_and_trains():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="resnet", depth=1, width=8), (3, 16, 16), 10)
    assert isinstance(model, ResNet)
    _forward_backward(model, (3, 16, 16), 10)
    # it learns: 30 Adam steps memorise 16 random images of 10 classes (about 2 s on a CPU)
    x, y = torch.randn(16, 3, 16, 16), torch.arange(16) % 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.0 and losses[-1] < 0.1 * losses[0], losses
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()
    # the projection skips appear where the width doubles
    assert sum(1 for m in model.modules() if m.__class__.__name__ == "ResidualBlock") == 3


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "densenet121"])
def test_torchvision_backbones_get_a_new_head_and_freeze(name):
    cfg = ModelConfig(arch=f"torchvision:{name}", pretrained=False, freeze_backbone=True)
    model = build_model(cfg, (3, 32, 32), 2)
    model.eval()  # batch norm with 4 samples at 1x1 spatial size needs eval statistics
    total, trainable = count_params(model)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert head.out_features == 2
    assert trainable == sum(p.numel() for p in head.parameters())
    assert total > 1_000_000
    x = torch.randn(4, 3, 32, 32)
    model(x).sum().backward()
    assert head.weight.grad is not None
    assert "(frozen)" in format_summary(layer_summary(model, (3, 32, 32)), model)


def test_models_reject_flat_data_for_image_architectures():
    with pytest.raises(ConfigError, match="needs image data"):
        build_model(ModelConfig(arch="cnn"), (2,), 2)
    with pytest.raises(ConfigError, match="needs image data"):
        build_model(ModelConfig(arch="torchvision:resnet18"), (2,), 2)


def test_pretrained_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match="pretrained weights are not available offline.*set model.pretrained = false"):
        build_model(ModelConfig(arch="torchvision:resnet18", pretrained=True), (3, 32, 32), 2)
