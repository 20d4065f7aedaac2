"""Weight-distribution interventions on IMP subnetworks at rewind iteration k (Frankle et al.
2020, Figures 4-6): each is a branch trial on a level's mask, trained from k like IMP.

    python sweeps/interventions.py                           # quick: Fashion-MNIST
    python sweeps/interventions.py --interventions permute_layer,noise_0.5 --intervention-levels 2
    python sweeps/interventions.py --list-interventions
"""

import sys

from earlyphase.runs import get_run
from earlyphase.sweep import SweepSpec
from earlyphase.tune.cli import main

PAPER_SET = (
    "signs_0_magnitudes_0", "signs_0_magnitudes_k", "signs_k_magnitudes_0", "random_magnitudes",
    "random_reinit", "random_prune", "permute_network", "permute_layer", "permute_filter",
    "permute_network_magnitudes", "permute_layer_magnitudes", "permute_filter_magnitudes",
    "noise_0.5", "noise_1", "noise_2",
)  # fmt: skip

PRESETS = {
    "smoke": SweepSpec(
        run=get_run("smoke_synthetic"),
        rewind_iterations=(0, 32),
        levels=2,
        interventions=("signs_0_magnitudes_k", "permute_layer", "noise_0.5"),
        intervention_levels=(2,),
        intervention_rewind_iterations=(32,),
    ),
    # IMP rewound to 500 with every intervention at 64% and 41% density; k=0 for reference
    "quick": SweepSpec(
        run=get_run("fashion_mnist_lenet"),
        rewind_iterations=(0, 500),
        levels=4,
        interventions=PAPER_SET,
        intervention_levels=(2, 4),
        intervention_rewind_iterations=(500,),
    ),
    "paper": SweepSpec(
        run=get_run("paper_resnet20_cifar10"),
        seeds=(0, 1, 2),
        rewind_iterations=(0, 500, 2000),
        levels=20,
        interventions=PAPER_SET,
        intervention_levels=tuple(range(2, 21, 2)),
        intervention_rewind_iterations=(500, 2000),
    ),
}


if __name__ == "__main__":
    sys.exit(main("interventions", PRESETS, __doc__.splitlines()[0]))
