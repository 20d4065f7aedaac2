"""Weight-distribution interventions on IMP subnetworks at rewind iteration k (Frankle et al.
2020, Figures 4-6): each is a branch trial on a level's mask, trained from k like IMP.

    python sweeps/interventions.py                           # quick: Fashion-MNIST
    python sweeps/interventions.py --interventions permute_layer,noise_0.5
    python sweeps/interventions.py --list-interventions
"""

import argparse
import sys

from earlyphase.interventions import describe
from earlyphase.presets import get_preset
from earlyphase.sweep import SweepSpec
from earlyphase.tune.cli import int_list, main

PAPER_SET = (
    "signs_0_magnitudes_0", "signs_0_magnitudes_k", "signs_k_magnitudes_0", "random_magnitudes",
    "random_reinit", "random_prune", "permute_network", "permute_layer", "permute_filter",
    "permute_network_magnitudes", "permute_layer_magnitudes", "permute_filter_magnitudes",
    "noise_0.5", "noise_1", "noise_2",
)  # fmt: skip

PRESETS = {
    "smoke": SweepSpec(
        run=get_preset("smoke_synthetic"),
        rewind_iterations=(0, 32),
        levels=2,
        branches=("signs_0_magnitudes_k", "permute_layer", "noise_0.5"),
        branch_levels=(2,),
        branch_rewind_iterations=(32,),
    ),
    # IMP rewound to 500 with every intervention at 64% and 41% density; k=0 for reference
    "quick": SweepSpec(
        run=get_preset("fashion_mnist_lenet"),
        rewind_iterations=(0, 500),
        levels=4,
        branches=PAPER_SET,
        branch_levels=(2, 4),
        branch_rewind_iterations=(500,),
    ),
    "paper": SweepSpec(
        run=get_preset("paper_resnet20_cifar10"),
        seeds=(0, 1, 2),
        rewind_iterations=(0, 500, 2000),
        levels=20,
        branches=PAPER_SET,
        branch_levels=tuple(range(2, 21, 2)),
        branch_rewind_iterations=(500, 2000),
    ),
}


class _ListInterventions(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print(describe())
        parser.exit()


def _options(parser):
    parser.add_argument("--interventions", help="comma-separated branch names (see --list-interventions)")
    parser.add_argument("--branch-levels", type=int_list, help="levels that get interventions: 2,4")
    parser.add_argument("--list-interventions", nargs=0, action=_ListInterventions, help="list and exit")


def _customize(sweep: SweepSpec, args) -> SweepSpec:
    if args.interventions:
        sweep = sweep.replace(branches=tuple(n.strip() for n in args.interventions.split(",") if n.strip()))
    if args.branch_levels:
        sweep = sweep.replace(branch_levels=args.branch_levels)
    return sweep


if __name__ == "__main__":
    sys.exit(
        main("interventions", PRESETS, __doc__.splitlines()[0], customize=_customize, extend_parser=_options)
    )
