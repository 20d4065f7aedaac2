"""Static facts the specs are checked against: the datasets and the architecture names.

Torch-free, so :mod:`earlyphase.specs` can validate a spec without importing the models or
loading data; :mod:`earlyphase.data` and :mod:`earlyphase.models` build on the same facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from earlyphase.errors import SpecError


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's fixed facts; ``mean``/``std`` are per channel in [0, 1] pixel units."""

    name: str
    num_classes: int
    shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_augment: bool
    train_size: int
    test_size: int


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, 50_000, 10_000
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, (1, 28, 28), (0.2860,), (0.3530,), False, 60_000, 10_000
    ),
    "mnist": DatasetInfo("mnist", 10, (1, 28, 28), (0.1307,), (0.3081,), False, 60_000, 10_000),
    # procedural: fixed class prototypes plus noise (earlyphase.data), for tests
    "synthetic": DatasetInfo(
        "synthetic", 10, (3, 16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), False, 4096, 1024
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise SpecError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}") from None


MODEL_FAMILIES = (
    "resnet{6n+2} (resnet20, resnet56...), vgg{11,13,16,19}, lenet_300_100, mlp_{h1}_{h2}..., conv{2,4,6}"
)
_MODEL_PATTERNS = {
    "resnet": r"resnet([1-9]\d*)",
    "vgg": r"vgg(11|13|16|19)",
    "mlp": r"mlp((?:_[1-9]\d*)+)",
    "conv": r"conv([246])",
}


def parse_model_name(name: str) -> tuple[str, list[int]]:
    """``"resnet20"`` → ``("resnet", [20])``, ``"lenet_300_100"`` → ``("mlp", [300, 100])``."""
    if name == "lenet_300_100":
        return "mlp", [300, 100]
    for family, pattern in _MODEL_PATTERNS.items():
        match = re.fullmatch(pattern, name)
        if match:
            numbers = [int(x) for x in match.group(1).strip("_").split("_")]
            if family == "resnet" and (numbers[0] < 8 or (numbers[0] - 2) % 6):
                break
            return family, numbers
    raise SpecError(f"unknown model {name!r}; families: {MODEL_FAMILIES}")
