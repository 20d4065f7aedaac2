"""Standard runs: named RunSpecs (the paper's setting and CPU-scale stand-ins) that sweep presets build on.

A *run* is what one dense network and its IMP levels are trained with; a sweep *preset* (in
``sweeps/*.py``) crosses a run with seeds, rewind iterations, levels and interventions.
"""

from __future__ import annotations

from earlyphase.errors import SpecError
from earlyphase.specs import DataSpec, ModelSpec, PruningSpec, RunSpec, TrainingSpec


def paper_cifar10(model: str, layers_to_ignore: tuple[str, ...] = ()) -> RunSpec:
    """docs/experiments.md A0: ``model`` on CIFAR-10 as the paper (and OpenLTH) train it: 160 epochs of
    SGD (62,560 iterations at batch 128), lr 0.1 ÷10 at epochs 80 and 120, no warmup, fp32, each level
    pruning 20 % of the surviving weights (minus ``layers_to_ignore``)."""
    return RunSpec(
        data=DataSpec("cifar10", batch_size=128),
        model=ModelSpec(model),
        training=TrainingSpec(
            steps="160ep",
            lr=0.1,
            momentum=0.9,
            weight_decay=1e-4,
            milestones=("80ep", "120ep"),
            precision="fp32",
        ),
        pruning=PruningSpec(fraction=0.2, layers_to_ignore=layers_to_ignore),
    )


RUNS: dict[str, RunSpec] = {
    "paper_resnet20_cifar10": paper_cifar10("resnet20"),
    "paper_resnet56_cifar10": paper_cifar10("resnet56"),
    # OpenLTH's cifar_vgg_16 never prunes the output layer
    "paper_vgg16_cifar10": paper_cifar10("vgg16", layers_to_ignore=("fc.weight",)),
    # CPU scale: LeNet-300-100 on Fashion-MNIST, a few epochs of SGD with one lr drop.
    "fashion_mnist_lenet": RunSpec(
        data=DataSpec("fashion_mnist", batch_size=128),
        model=ModelSpec("lenet_300_100"),
        training=TrainingSpec(
            steps="6ep", lr=0.05, momentum=0.9, weight_decay=1e-4, milestones=("4ep",), eval_every="1ep"
        ),
        pruning=PruningSpec(fraction=0.2),
    ),
    # CPU scale with an early phase (docs/experiments.md A1): ResNet-8 at a high lr without warmup on
    # Fashion-MNIST pooled to 14×14, a fixed 20,000-example subset; each level prunes half the survivors.
    "fashion_mnist14_resnet8": RunSpec(
        data=DataSpec("fashion_mnist", batch_size=128, image_size=14, train_subset=20_000),
        model=ModelSpec("resnet8"),
        training=TrainingSpec(
            steps="1200it", lr=0.8, momentum=0.9, weight_decay=1e-4, milestones=("900it",), eval_every="600it"
        ),
        pruning=PruningSpec(fraction=0.5),
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
