"""IMP with rewinding over a grid of rewind iterations (Frankle et al. 2020, Figure 1).

python sweeps/rewind_grid.py                  # quick: Fashion-MNIST, minutes on a laptop
python sweeps/rewind_grid.py --preset paper   # ResNet-20 on CIFAR-10, on a GPU cluster
python sweeps/rewind_grid.py --model resnet14 --width 2 --lr 0.2 --levels 3   # any spec field
"""

import sys

from earlyphase.interventions import BASELINES
from earlyphase.runs import get_run
from earlyphase.sweep import SweepSpec
from earlyphase.tune.cli import main

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
    # docs/experiments.md A1: ResNet-20 on CIFAR-10, 3 seeds, k up to 2000, 20 levels (1.2% density)
    "paper": SweepSpec(
        run=get_run("paper_resnet20_cifar10"),
        seeds=(0, 1, 2),
        rewind_iterations=(0, 25, 50, 100, 250, 500, 1000, 2000),
        levels=20,
        interventions=BASELINES,
    ),
}

if __name__ == "__main__":
    sys.exit(main("rewind_grid", PRESETS, __doc__.splitlines()[0]))
