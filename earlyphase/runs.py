"""Standard runs: named RunSpecs (the paper's setting and CPU-scale stand-ins) that sweep presets build on.

A *run* is what one dense network and its IMP levels are trained with; a sweep *preset* (in
``sweeps/*.py``) crosses a run with seeds, rewind iterations, levels and interventions.
"""

from __future__ import annotations

from earlyphase.errors import SpecError
from earlyphase.specs import DataSpec, ModelSpec, PruningSpec, RunSpec, TrainingSpec

RUNS: dict[str, RunSpec] = {
    # docs/experiments.md A0: ResNet-20 on CIFAR-10, 160 epochs of SGD (62,560 iterations at batch 128).
    "paper_resnet20_cifar10": RunSpec(
        data=DataSpec("cifar10", batch_size=128),
        model=ModelSpec("resnet20"),
        training=TrainingSpec(
            steps="160ep", lr=0.1, momentum=0.9, weight_decay=1e-4, milestones=("80ep", "120ep")
        ),
        pruning=PruningSpec(fraction=0.2),
    ),
    # CPU scale: LeNet-300-100 on Fashion-MNIST, a few epochs of SGD with one lr drop.
    "fashion_mnist_lenet": RunSpec(
        data=DataSpec("fashion_mnist", batch_size=128),
        model=ModelSpec("lenet_300_100"),
        training=TrainingSpec(
            steps="6ep", lr=0.05, momentum=0.9, weight_decay=1e-4, milestones=("4ep",), eval_every="1ep"
        ),
        pruning=PruningSpec(fraction=0.2),
    ),
    # Seconds: a small MLP on the procedural dataset, for tests.
    "smoke_synthetic": RunSpec(
        data=DataSpec("synthetic", batch_size=64),
        model=ModelSpec("mlp_64_32"),
        training=TrainingSpec(
            steps="2ep", lr=0.05, momentum=0.9, weight_decay=1e-4, milestones=("1ep",), eval_every="1ep"
        ),
        pruning=PruningSpec(fraction=0.2),
    ),
}


def get_run(name: str) -> RunSpec:
    try:
        return RUNS[name]
    except KeyError:
        raise SpecError(f"unknown run {name!r}; choose one of {', '.join(RUNS)}") from None
