"""IMP with rewinding over a grid of rewind iterations (Frankle et al. 2020, Figure 1).

python sweeps/rewind_grid.py                  # quick: Fashion-MNIST, minutes on a laptop
python sweeps/rewind_grid.py --preset cpu_early_phase   # the early-phase finding on 2 CPU cores
python sweeps/rewind_grid.py --preset paper   # ResNet-20 on CIFAR-10, on a GPU cluster
python sweeps/rewind_grid.py --preset paper_resnet56   # or paper_vgg16: the same grid, other networks
python sweeps/rewind_grid.py --model resnet14 --width 2 --lr 0.2 --levels 3   # any spec field
"""

import sys

from earlyphase.interventions import BASELINES
from earlyphase.runs import get_run
from earlyphase.sweep import SweepSpec
from earlyphase.tune.cli import main

PAPER_REWIND_ITERATIONS = (0, 25, 50, 100, 250, 500, 1000, 2000)


def paper_grid(run: str) -> SweepSpec:
    """docs/experiments.md A1: 3 seeds, k up to 2000, 20 levels (1.2% density), baselines at every level."""
    return SweepSpec(
        run=get_run(run),
        seeds=(0, 1, 2),
        rewind_iterations=PAPER_REWIND_ITERATIONS,
        levels=20,
        interventions=BASELINES,
    )


PRESETS = {
    # seconds: a small MLP on procedural data, for tests
    "smoke": SweepSpec(
        run=get_run("smoke_synthetic"),
        seeds=(0,),
        rewind_iterations=(0, 32),
        levels=2,
        interventions=BASELINES,
    ),
    # minutes on 2 CPU cores: LeNet-300-100 on Fashion-MNIST to 16.8% density (8 levels)
    "quick": SweepSpec(
        run=get_run("fashion_mnist_lenet"),
        seeds=(0,),
        rewind_iterations=(0, 100, 500),
        levels=8,
        interventions=BASELINES,
    ),
    # 25 min on 2 CPU cores: the early-phase finding at CPU scale (docs/experiments.md A1), 3 seeds,
    # IMP to 3.1 % density (50 % per level), baselines at the middle and the deepest level
    "cpu_early_phase": SweepSpec(
        run=get_run("fashion_mnist14_resnet8"),
        seeds=(0, 1, 2),
        rewind_iterations=(0, 50, 100),
        levels=5,
        interventions=BASELINES,
        intervention_levels=(3, 5),
        intervention_rewind_iterations=(0,),
    ),
    # the paper's grid on ResNet-20, ResNet-56 and VGG-16 (output layer never pruned), CIFAR-10
    "paper": paper_grid("paper_resnet20_cifar10"),
    "paper_resnet56": paper_grid("paper_resnet56_cifar10"),
    "paper_vgg16": paper_grid("paper_vgg16_cifar10"),
}

if __name__ == "__main__":
    sys.exit(main("rewind_grid", PRESETS, __doc__.splitlines()[0]))
