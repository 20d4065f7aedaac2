"""Instability analysis (Frankle et al. 2020; Paul et al. 2022): linear mode connectivity vs rewind iteration.

From the state at each rewind iteration k (dense, or an IMP subnetwork of the chosen levels; after
each pretraining of the sweep at k = P), two copies are trained to the end with different data
orders; the error along the line between them gives the error barrier, and the midpoint loss of
every training example its per-example barrier:

    python sweeps/stability.py --preset smoke     # seconds: synthetic data, for tests
    python sweeps/stability.py                    # quick: LeNet-300-100 on Fashion-MNIST, CPU
    python sweeps/stability.py --preset paper     # ResNet-20 on CIFAR-10, on a GPU cluster
    python sweeps/stability.py --rewind-iterations 0,100,500 --stability-levels 0,3 --alpha-points 11
"""

import sys

from earlyphase.runs import get_run
from earlyphase.specs import PruningSpec
from earlyphase.sweep import StabilitySpec, SweepSpec
from earlyphase.tune.cli import main

SMOKE_RUN = get_run("smoke_synthetic")
# the data diet's quick run: 3 epochs (1,407 iterations), the lr drop at 2, half the weights per level
QUICK_RUN = get_run("fashion_mnist_lenet").replace(
    training=get_run("fashion_mnist_lenet").training.replace(steps="3ep", milestones=("2ep",)),
    pruning=PruningSpec(fraction=0.5),
)
PAPER_RUN = get_run("paper_resnet20_cifar10")

PRESETS = {
    # seconds: dense copies and level-1 copies from k = 0 and 16, and after rotation pretraining (P = 16)
    "smoke": StabilitySpec(
        sweep=SweepSpec(
            run=SMOKE_RUN,
            rewind_iterations=(0, 16),
            levels=1,
            interventions=(),
            pretraining_modes=("none", "rotation"),
            pretraining_lengths=("16it",),
        ),
        stability_levels=(0, 1),
        alpha_points=5,
    ),
    # minutes on 2 CPU cores: dense copies from 6 rewind iterations, 11 α; IMP to 3 levels (12.5%
    # density) from each k for the scatter of connected examples against IMP accuracy
    "quick": StabilitySpec(
        sweep=SweepSpec(
            run=QUICK_RUN, rewind_iterations=(0, 25, 100, 250, 500, 1000), levels=3, interventions=()
        ),
        alpha_points=11,
    ),
    # docs/experiments.md B: ResNet-20 on CIFAR-10, 3 seeds, k from 0 to 10 epochs; copies of the
    # dense network and of IMP's level-10 subnetwork (10.7% density), 30 α, BatchNorm re-estimated
    "paper": StabilitySpec(
        sweep=SweepSpec(
            run=PAPER_RUN,
            seeds=(0, 1, 2),
            rewind_iterations=(0, 100, 250, 500, 1000, 2000, 4000),
            levels=10,
            interventions=(),
        ),
        stability_levels=(0, 10),
        interpolation_bn="reestimate",
        barrier_train_examples=0,
    ),
}

if __name__ == "__main__":
    sys.exit(
        main(
            "stability",
            PRESETS,
            __doc__.splitlines()[0],
            spec_class=StabilitySpec,
            runner="earlyphase.tune.stability:run_stability",
        )
    )
