"""Early-phase telemetry of dense training (Frankle et al. 2020, Figures 2-3).

    python sweeps/telemetry.py                  # quick: LeNet-300-100 on Fashion-MNIST
    python sweeps/telemetry.py --preset paper   # ResNet-20 on CIFAR-10, first 4,000 iterations
    python sweeps/telemetry.py --telemetry-end 3000it --split-level 5 --split-rewind-iteration 500

Writes telemetry.csv (one row per seed, iteration, metric, weight group) beside results.csv;
with a split level, the weight metrics are also given for the weights IMP keeps and prunes.
"""

import sys

from earlyphase.runs import get_run
from earlyphase.specs import TelemetrySpec
from earlyphase.sweep import SweepSpec
from earlyphase.tune.cli import main

PRESETS = {
    "smoke": SweepSpec(
        run=get_run("smoke_synthetic"),
        rewind_iterations=(0,),
        levels=1,
        interventions=(),
        telemetry=TelemetrySpec(
            end="100it", every_until=10, points=10, train_eval_examples=512, split_level=1
        ),
    ),
    # split into the 21% of weights IMP (rewound to 500) keeps after 7 levels and the rest
    "quick": SweepSpec(
        run=get_run("fashion_mnist_lenet"),
        rewind_iterations=(500,),
        levels=7,
        interventions=(),
        telemetry=TelemetrySpec(end="2000it", points=40, split_level=7, split_rewind_iteration=500),
    ),
    "paper": SweepSpec(
        run=get_run("paper_resnet20_cifar10"),
        seeds=(0, 1, 2),
        rewind_iterations=(500,),
        levels=10,
        interventions=(),
        telemetry=TelemetrySpec(end="4000it", points=60, split_level=10, split_rewind_iteration=500),
    ),
}


if __name__ == "__main__":
    sys.exit(main("telemetry", PRESETS, __doc__.splitlines()[0]))
