"""Architectures, parameter counts, initialisation statistics, determinism and name checking."""

import math

import pytest
import torch
from torch import nn

from earlyphase.catalog import parse_model_name
from earlyphase.errors import SpecError
from earlyphase.models import build_model, kaiming_std
from earlyphase.specs import ModelSpec

CIFAR, MNIST = (3, 32, 32), (1, 28, 28)


def build(name: str, shape=CIFAR, seed: int = 0, width: int = 1, classes: int = 10) -> nn.Module:
    return build_model(ModelSpec(name, width), classes, shape, seed)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weight_modules(model: nn.Module) -> list[str]:
    """Names of the conv and linear weights in module order, found independently of ``prunable``."""
    return [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# CIFAR ResNet with n blocks per stage, 10 classes (conv k×k×in×out, BN 2 per channel):
#   stem    3·16·9 + 32                                              =    464
#   stage 1 n × (2·16·16·9 + 2·32)                                   =  4,672 n
#   stage 2 (16·32·9 + 32·32·9 + 128 + 16·32 + 64) + (n−1)(2·32·32·9 + 128)
#                                                                     = 14,528 + 18,560 (n−1)
#   stage 3 (32·64·9 + 64·64·9 + 256 + 32·64 + 128) + (n−1)(2·64·64·9 + 256)
#                                                                     = 57,728 + 73,984 (n−1)
#   fc      64·10 + 10                                                =    650
# n = 3 (ResNet-20): 272,474; n = 9 (ResNet-56): 855,770.
@pytest.mark.parametrize("name, blocks, params", [("resnet20", 3, 272_474), ("resnet56", 9, 855_770)])
def test_resnet_parameter_count_and_names(name, blocks, params):
    by_hand = 464 + 4_672 * blocks + 14_528 + 18_560 * (blocks - 1) + 57_728 + 73_984 * (blocks - 1) + 650
    assert by_hand == params
    model = build(name)
    assert count(model) == params
    names = dict(model.named_parameters())
    # 1 stem conv + 2 per block + 2 shortcut convs + fc
    assert len(model.prunable) == 1 + 2 * 3 * blocks + 2 + 1
    assert list(model.prunable) == weight_modules(model)
    assert all(names[n].dim() in (2, 4) and n.endswith(".weight") for n in model.prunable)
    norms = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(norms) == len(model.prunable) - 1 and not norms & set(model.prunable)
    assert model.output_layer == ("fc.weight", "fc.bias")
    assert names["fc.weight"].shape == (10, 64)
    assert model(torch.randn(4, *CIFAR)).shape == (4, 10)


def test_resnet_width_multiplies_filters():
    model = build("resnet20", width=2, classes=100)
    params = dict(model.named_parameters())
    assert params["conv.weight"].shape == (32, 3, 3, 3)
    assert params["fc.weight"].shape == (100, 128)


def test_lenet_300_100():
    model = build("lenet_300_100", MNIST)
    assert count(model) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == 266_610
    assert model.prunable == ("layers.0.weight", "layers.1.weight", "fc.weight")
    assert model.output_layer == ("fc.weight", "fc.bias")
    same = build("mlp_300_100", MNIST)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))


def test_widths_and_input_channels():
    mlp = dict(build("mlp_512_256", CIFAR, width=2).named_parameters())
    assert mlp["layers.0.weight"].shape == (1024, 3 * 32 * 32)
    assert mlp["fc.weight"].shape == (10, 512)
    conv = dict(build("conv4", MNIST).named_parameters())
    assert conv["features.0.weight"].shape == (64, 1, 3, 3)
    assert conv["fc1.weight"].shape == (256, 128 * 7 * 7)  # 28 → 14 → 7
    vgg = dict(build("vgg11", CIFAR, width=2).named_parameters())
    assert vgg["fc.weight"].shape == (10, 1024)


def test_kaiming_std():
    assert kaiming_std(torch.empty(64, 16, 3, 3)) == pytest.approx(math.sqrt(2 / 144))
    assert kaiming_std(torch.empty(10, 64)) == pytest.approx(math.sqrt(2 / 64))


def test_initialisation_statistics():
    model = build("resnet20", width=2)
    params = dict(model.named_parameters())
    gammas = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    betas = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert gammas.numel() == 2 * 784  # 784 BN channels at W = 1
    assert gammas.min() >= 0 and gammas.max() < 1
    assert gammas.mean().item() == pytest.approx(0.5, abs=0.03)
    assert all(torch.count_nonzero(b) == 0 for b in betas)
    assert torch.count_nonzero(params["fc.bias"]) == 0
    conv = params["blocks.8.conv2.weight"]  # 128×128×3×3
    assert conv.std().item() == pytest.approx(kaiming_std(conv), rel=0.05)
    assert conv.mean().item() == pytest.approx(0, abs=0.05 * kaiming_std(conv))

    mlp = dict(build("lenet_300_100", MNIST).named_parameters())
    linear = mlp["layers.0.weight"]
    assert linear.std().item() == pytest.approx(kaiming_std(linear), rel=0.05)
    assert all(torch.count_nonzero(mlp[f"{n}.bias"]) == 0 for n in ("layers.0", "layers.1", "fc"))
    conv_biases = [m.bias for m in build("conv2").modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all(torch.count_nonzero(b) == 0 for b in conv_biases)


def test_determinism_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = build("resnet20", seed=5).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(7)  # a different global state must not matter
    again = build("resnet20", seed=5).state_dict()
    other = build("resnet20", seed=6).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["conv.weight"], other["conv.weight"])
    assert not torch.equal(first["bn.weight"], other["bn.weight"])
    for model in (build("resnet20"), build("lenet_300_100", MNIST)):
        assert all(
            p.dtype == torch.float32 and p.device.type == "cpu"
            for p in model.state_dict().values()
            if p.is_floating_point()
        )


@pytest.mark.parametrize(
    "name, shape",
    [
        ("resnet20", CIFAR),
        ("resnet20", MNIST),
        ("vgg11", CIFAR),
        ("vgg16", MNIST),
        ("vgg19", CIFAR),
        ("lenet_300_100", MNIST),
        ("mlp_64_32_16", CIFAR),
        ("conv2", MNIST),
        ("conv4", MNIST),
        ("conv6", MNIST),
        ("conv6", CIFAR),
    ],
)
def test_forward_backward_and_channels_last(name, shape):
    model = build(name, shape, seed=1)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    model(x).square().mean().backward()
    params = dict(model.named_parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    assert set(model.prunable) <= set(params) and set(model.output_layer) <= set(params)
    assert list(model.prunable) == weight_modules(model)
    assert model.output_layer[0] == model.prunable[-1]
    model.eval()
    with torch.no_grad():
        out = model(x)
        out_cl = model(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 10)
    assert torch.allclose(out, out_cl, rtol=1e-4, atol=1e-5 * out.abs().max().item())


@pytest.mark.parametrize("name, shape", [("vgg16", (3, 8, 8)), ("conv6", (1, 4, 4))])
def test_input_too_small(name, shape):
    with pytest.raises(SpecError, match="at least"):
        build(name, shape)


@pytest.mark.parametrize(
    "name",
    ["resnet20", "resnet110", "vgg11", "vgg19", "lenet_300_100", "mlp_512_256", "mlp_100", "conv2", "conv6"],
)
def test_known_names(name):
    parse_model_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "resnet21",
        "resnet2",
        "resnet020",
        "vgg12",
        "mlp_",
        "mlp_0_10",
        "mlp",
        "conv3",
        "lenet_300_101",
        "transformer",
        "",
    ],
)
def test_bad_names(name):
    with pytest.raises(SpecError) as info:
        parse_model_name(name)
    message = str(info.value)
    assert "\n" not in message and "resnet" in message and "vgg" in message and "mlp_" in message
    with pytest.raises(SpecError):
        ModelSpec(name=name)
