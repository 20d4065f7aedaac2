"""Pretraining instead of the early phase (Frankle et al. 2020, section 5, Figures 7-8).

IMP after P iterations of pretraining on a modified task, every level rewound to P, beside plain
IMP rewound to 0 and to k = P:

    python sweeps/pretraining.py                  # quick: LeNet-300-100 on Fashion-MNIST, CPU
    python sweeps/pretraining.py --preset paper   # ResNet-20 on CIFAR-10, on a GPU cluster
    python sweeps/pretraining.py --modes none,rotation,blur_2 --pretraining-lengths 500it,2ep \\
        --rewind-iterations 0,500,2ep

A mode is written as in results.csv: none, supervised, random_labels_<fraction>, rotation,
blur_<factor>, subset_<n>, with a sparse_L<level>[_k<k>]_ prefix to pretrain that level's IMP
subnetwork (of the plain chain rewound to k) and a _reset_optimizer suffix for a fresh optimiser
after pretraining. Every mode but none runs at every length P; the P among the rewind iterations
give the references rewound to k = P.
"""

import sys

from earlyphase.runs import get_run
from earlyphase.sweep import SweepSpec
from earlyphase.tune.cli import main

SMOKE_RUN = get_run("smoke_synthetic")
QUICK_RUN = get_run("fashion_mnist_lenet")
PAPER_RUN = get_run("paper_resnet20_cifar10")
QUICK_LENGTHS = ("500it", "2ep")
PAPER_LENGTHS = ("1ep", "2ep", "5ep", "10ep", "20ep", "40ep")

PRESETS = {
    # seconds: every mode, and sparse pretraining of level 1 of the chain rewound to 0, for P = 16
    "smoke": SweepSpec(
        run=SMOKE_RUN,
        rewind_iterations=(0, 16),
        levels=2,
        interventions=(),
        pretraining_modes=(
            *("none", "supervised", "random_labels_1.0", "rotation", "blur_4", "subset_640"),
            "sparse_L1_rotation",
        ),
        pretraining_lengths=("16it",),
    ),
    # minutes on 2 CPU cores: the early phase's candidates at P = 500 iterations and 2 epochs (938),
    # against plain IMP rewound to 0, 500 and 938; 8 levels (16.8% density)
    "quick": SweepSpec(
        run=QUICK_RUN,
        rewind_iterations=(0, *(QUICK_RUN.iterations(p) for p in QUICK_LENGTHS)),
        levels=8,
        interventions=(),
        pretraining_modes=("none", "supervised", "random_labels_1.0", "rotation", "blur_4"),
        pretraining_lengths=QUICK_LENGTHS,
    ),
    # docs/experiments.md A4: ResNet-20 on CIFAR-10, 3 seeds, each mode pretrained for 1 to 40 epochs,
    # 20 levels (1.2% density); plain IMP rewound to 0, 500 and to each P for reference
    "paper": SweepSpec(
        run=PAPER_RUN,
        seeds=(0, 1, 2),
        rewind_iterations=(0, 500, *(PAPER_RUN.iterations(p) for p in PAPER_LENGTHS)),
        levels=20,
        interventions=(),
        pretraining_modes=("none", "supervised", "random_labels_1.0", "rotation", "blur_4"),
        pretraining_lengths=PAPER_LENGTHS,
    ),
}

if __name__ == "__main__":
    sys.exit(main("pretraining", PRESETS, __doc__.splitlines()[0]))
