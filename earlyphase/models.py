"""Models with the paper's initialisers; each names its prunable weights and its output layer.

Families: ``resnet{D}`` (CIFAR ResNet-D, D = 6n+2, width W: 16W/32W/64W filters), ``vgg{11,13,16,19}``
(CIFAR VGG), ``mlp_{h1}_{h2}...`` (``lenet_300_100`` = ``mlp_300_100``) and ``conv{2,4,6}``
(Frankle & Carbin's Conv-2/4/6). Initialisation: Kaiming normal (fan_in, ReLU gain) on conv and
linear weights, biases 0, BatchNorm γ ~ U[0, 1) and β = 0, all drawn from a generator seeded by
the run's seed, never from the global RNG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from earlyphase.catalog import parse_model_name
from earlyphase.errors import SpecError
from earlyphase.specs import ModelSpec

_VGG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}
_CONV = {2: [64, 64, "M"], 4: [64, 64, "M", 128, 128, "M"], 6: [64, 64, "M", 128, 128, "M", 256, 256, "M"]}


def kaiming_std(weight: torch.Tensor) -> float:
    """Std of the Kaiming-normal (fan_in, ReLU gain) initialiser for a conv/linear weight."""
    return math.sqrt(2.0 / weight[0].numel())


class _Block(nn.Module):
    """A basic residual block; a 1×1 conv + BN shortcut when the shape changes."""

    def __init__(self, f_in: int, f_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or f_in != f_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, 1, stride, bias=False), nn.BatchNorm2d(f_out)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet-D: conv(16W), three stages of (D-2)/6 blocks of 16W/32W/64W, pool, fc."""

    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int):
        super().__init__()
        n, filters = (depth - 2) // 6, [16 * width, 32 * width, 64 * width]
        self.conv = nn.Conv2d(in_channels, filters[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(filters[0])
        blocks, f_in = [], filters[0]
        for stage, f_out in enumerate(filters):
            for i in range(n):
                blocks.append(_Block(f_in, f_out, 2 if stage > 0 and i == 0 else 1))
                f_in = f_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(filters[-1], num_classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _conv_stack(plan: list, width: int, in_channels: int, batch_norm: bool) -> tuple[nn.Sequential, int]:
    layers, channels = [], in_channels
    for item in plan:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        out = item * width
        layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU())
        channels = out
    return nn.Sequential(*layers), channels


class VGG(nn.Module):
    """CIFAR VGG: 3×3 conv + BN + ReLU stages with max-pooling, global average pool, one fc.

    The convs have no bias (BatchNorm's β makes it redundant), unlike OpenLTH's, so VGG-16 has 4,224
    fewer parameters than OpenLTH's; the global pool lets it run on any input of at least 16×16.
    """

    def __init__(self, depth: int, width: int, in_channels: int, num_classes: int):
        super().__init__()
        self.features, channels = _conv_stack(_VGG[depth], width, in_channels, batch_norm=True)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class MLP(nn.Module):
    """Fully connected ReLU network on the flattened input (LeNet-300-100 and friends)."""

    def __init__(self, hidden: list[int], width: int, input_size: int, num_classes: int):
        super().__init__()
        sizes = [input_size] + [h * width for h in hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.fc = nn.Linear(sizes[-1], num_classes)

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.layers:
            x = F.relu(layer(x))
        return self.fc(x)


class ConvNet(nn.Module):
    """Conv-2/4/6 (Frankle & Carbin 2019): pairs of 3×3 convs with max-pooling, fc 256-256-classes."""

    def __init__(self, depth: int, width: int, input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.features, channels = _conv_stack(_CONV[depth], width, input_shape[0], batch_norm=False)
        pools = depth // 2
        side_h, side_w = input_shape[1] >> pools, input_shape[2] >> pools
        self.fc1 = nn.Linear(channels * side_h * side_w, 256 * width)
        self.fc2 = nn.Linear(256 * width, 256 * width)
        self.fc = nn.Linear(256 * width, num_classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.fc(F.relu(self.fc2(F.relu(self.fc1(x)))))


def build_model(spec: ModelSpec, num_classes: int, input_shape: tuple[int, int, int], seed: int) -> nn.Module:
    """A freshly initialised model on the CPU, bitwise determined by ``seed``."""
    family, numbers = parse_model_name(spec.name)
    channels, height, width_px = input_shape
    if family in ("vgg", "conv"):
        side = 2 ** (_VGG if family == "vgg" else _CONV)[numbers[0]].count("M")
        if min(height, width_px) < side:
            raise SpecError(f"{spec.name} needs inputs of at least {side}×{side}, got {height}×{width_px}")
    rng_state = torch.random.get_rng_state()  # module constructors draw default inits; keep them private
    try:
        if family == "resnet":
            model = ResNet(numbers[0], spec.width, channels, num_classes)
        elif family == "vgg":
            model = VGG(numbers[0], spec.width, channels, num_classes)
        elif family == "mlp":
            model = MLP(numbers, spec.width, channels * height * width_px, num_classes)
        else:
            model = ConvNet(numbers[0], spec.width, input_shape, num_classes)
    finally:
        torch.random.set_rng_state(rng_state)
    _initialise(model, seed)
    model.prunable = tuple(
        f"{name}.weight" for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    model.output_layer = ("fc.weight", "fc.bias")
    return model


@torch.no_grad()
def _initialise(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=g)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.weight.uniform_(0, 1, generator=g)
            module.bias.zero_()
