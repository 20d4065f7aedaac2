"""Early-phase telemetry of dense training (Frankle et al. 2020, Figures 2-3).

    python sweeps/telemetry.py                  # quick: LeNet-300-100 on Fashion-MNIST
    python sweeps/telemetry.py --preset paper   # ResNet-20 on CIFAR-10, first 4,000 iterations

Writes telemetry.csv (one row per seed, iteration, metric, weight group) beside results.csv;
with a split level, the weight metrics are also given for the weights IMP keeps and prunes.
"""

import sys

from earlyphase.presets import get_preset
from earlyphase.sweep import SweepSpec, TelemetrySpec
from earlyphase.tune.cli import main

PRESETS = {
    "smoke": SweepSpec(
        run=get_preset("smoke_synthetic"),
        rewind_iterations=(0,),
        levels=1,
        branches=(),
        telemetry=TelemetrySpec(
            end="100it", every_until=10, points=10, train_eval_examples=512, split_level=1
        ),
    ),
    # split into the 21% of weights IMP (rewound to 500) keeps after 7 levels and the rest
    "quick": SweepSpec(
        run=get_preset("fashion_mnist_lenet"),
        rewind_iterations=(500,),
        levels=7,
        branches=(),
        telemetry=TelemetrySpec(end="2000it", points=40, split_level=7, split_rewind_iteration=500),
    ),
    "paper": SweepSpec(
        run=get_preset("paper_resnet20_cifar10"),
        seeds=(0, 1, 2),
        rewind_iterations=(500,),
        levels=10,
        branches=(),
        telemetry=TelemetrySpec(end="4000it", points=60, split_level=10, split_rewind_iteration=500),
    ),
}


def _split(parser):
    parser.add_argument("--telemetry-end", help="last iteration observed, e.g. 4000it or 2ep")
    parser.add_argument(
        "--split-level", type=int, help="split weights by IMP's mask at this level (0: no split)"
    )


def _customize(sweep: SweepSpec, args) -> SweepSpec:
    telemetry = sweep.telemetry
    if args.telemetry_end:
        telemetry = telemetry.replace(end=args.telemetry_end)
    if args.split_level is not None:
        k = sweep.rewind_iterations[0]
        telemetry = telemetry.replace(split_level=args.split_level, split_rewind_iteration=k)
    return sweep.replace(telemetry=telemetry)


if __name__ == "__main__":
    sys.exit(main("telemetry", PRESETS, __doc__.splitlines()[0], customize=_customize, extend_parser=_split))
