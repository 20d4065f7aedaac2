"""Lottery tickets on a data diet (Paul et al. 2022): IMP after pretraining on score-chosen subsets.

K score networks score every training example (EL2N, GraNd, forgetting; per-example barriers for
lmc subsets); each subset is pretrained on for P iterations and IMP rewinds every level to P,
beside plain IMP rewound to k = 0, P and 2P on the full data:

    python sweeps/data_diet.py --preset smoke     # seconds: synthetic data, for tests
    python sweeps/data_diet.py                    # quick: LeNet-300-100 on Fashion-MNIST, CPU
    python sweeps/data_diet.py --preset paper     # ResNet-20 on CIFAR-10, on a GPU cluster
    python sweeps/data_diet.py --modes none,subset_easy_forgetting_1000,subset_hard_el2n_1000_o1000

A subset is written as in results.csv: subset_random_<n>, subset_easy_<score>_<n>,
subset_hard_<score>_<n>, subset_lmc_<n> (lowest per-example barrier), with _o<offset> to skip
that many examples from the chosen end first; every subset is class-balanced.
"""

import sys

from earlyphase.runs import get_run
from earlyphase.specs import PruningSpec, ScoreSpec
from earlyphase.sweep import DataDietSpec, ScoredSweepSpec
from earlyphase.tune.cli import main

SMOKE_RUN = get_run("smoke_synthetic")
# 3 epochs (1,407 iterations), the lr drop at 2; half the weights pruned per level
QUICK_RUN = get_run("fashion_mnist_lenet").replace(
    training=get_run("fashion_mnist_lenet").training.replace(steps="3ep", milestones=("2ep",)),
    pruning=PruningSpec(fraction=0.5),
)
PAPER_RUN = get_run("paper_resnet20_cifar10")


def subsets(sizes: tuple[int, ...], scores: tuple[str, ...]) -> tuple[str, ...]:
    """Random, easiest and hardest by each score, and lowest barrier, at every size."""
    kinds = [f"{end}_{score}" for score in scores for end in ("easy", "hard")]
    return tuple(f"subset_{kind}_{n}" for n in sizes for kind in ("random", *kinds, "lmc"))


PRESETS = {
    # seconds: 2 score networks, every subset kind of 640 examples pretrained on for P = 16 iterations
    "smoke": DataDietSpec(
        sweep=ScoredSweepSpec(
            run=SMOKE_RUN,
            rewind_iterations=(0, 16, 32),
            levels=2,
            interventions=(),
            pretraining_modes=("none", *subsets((640,), ("el2n",))),
            pretraining_lengths=("16it",),
        ),
        scoring=ScoreSpec(score_networks=2, score_steps="32it", forgetting_every="8it"),
    ),
    # ~15-25 minutes on 2 loaded CPU cores: 4 score networks of 1 epoch (EL2N and forgetting; GraNd is
    # most of a network's time on the CPU), subsets of 1,000 examples pretrained on for P = 250
    # iterations, 5 levels at 50% per level (3.1% density), references rewound to 0, 250 and 500
    "quick": DataDietSpec(
        sweep=ScoredSweepSpec(
            run=QUICK_RUN,
            rewind_iterations=(0, 250, 500),
            levels=5,
            interventions=(),
            pretraining_modes=("none", *subsets((1000,), ("el2n",))),
            pretraining_lengths=("250it",),
        ),
        scoring=ScoreSpec(
            score_networks=4, score_steps="1ep", scores=("el2n", "forgetting"), forgetting_every="100it"
        ),
        barrier_networks=2,
    ),
    # docs/experiments.md B: ResNet-20 on CIFAR-10, 3 seeds; K = 16 score networks of 20 epochs (lth_diet);
    # subsets of 1,000 / 5,000 / 10,000 examples by every score pretrained on for P = 2,000 iterations
    # (ours); 20 levels (1.2% density); references rewound to 0, P and 2P
    "paper": DataDietSpec(
        sweep=ScoredSweepSpec(
            run=PAPER_RUN,
            seeds=(0, 1, 2),
            rewind_iterations=(0, 2000, 4000),
            levels=20,
            interventions=(),
            pretraining_modes=("none", *subsets((1000, 5000, 10000), ("el2n", "grand", "forgetting"))),
            pretraining_lengths=("2000it",),
        ),
        scoring=ScoreSpec(score_networks=16, score_steps="20ep", forgetting_every="1ep"),
        barrier_networks=4,
    ),
}

if __name__ == "__main__":
    sys.exit(
        main(
            "data_diet",
            PRESETS,
            __doc__.splitlines()[0],
            spec_class=DataDietSpec,
            runner="earlyphase.tune.datadiet:run_data_diet",
        )
    )
