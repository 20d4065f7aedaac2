"""Optuna searches inside Ray Tune, selecting on a validation split held out from the training set.

python sweeps/search.py dense                        # quick: LeNet-300-100 on Fashion-MNIST
python sweeps/search.py dense --lr-range 0.02,0.5 --batch-sizes 128,256 --trials 40
python sweeps/search.py earliest_k                   # the earliest k that matches dense at 10% density
python sweeps/search.py earliest_k --k-range 0,2ep --target-density 0.05 --tolerance 0.005
python sweeps/search.py earliest_k --storage-url postgresql://db-host/studies --address auto

dense: lr, momentum, weight decay, warmup and batch size maximising validation accuracy; ASHA stops
trailing trials; prints the best settings as a sweeps/rewind_grid.py command. earliest_k: IMP
chains to a target density over rewind iterations k, smallest k and highest validation accuracy
(multi-objective), each chain stopping once a level falls below dense - tolerance; prints the
Pareto front and the smallest matching k. The study is stored in study.db in the experiment
(or --storage-url); --resume continues it.
"""

import sys

from earlyphase.runs import get_run
from earlyphase.specs import RunSpec
from earlyphase.sweep import DenseSearchSpec, EarliestKSearchSpec
from earlyphase.tune.cli import Command, main_with_commands


def held_out(run: RunSpec, examples: int) -> RunSpec:
    """``run`` with ``examples`` training examples held out for validation."""
    return run.replace(data=run.data.replace(validation_examples=examples))


SMOKE = held_out(get_run("smoke_synthetic"), 500)  # 3,596 training examples left
FASHION_MNIST = held_out(get_run("fashion_mnist_lenet"), 5000)  # 55,000 left: 430 iterations per epoch
CIFAR10 = held_out(get_run("paper_resnet20_cifar10"), 5000)  # 45,000 left: 352 iterations per epoch

DENSE = {
    # seconds: four trials of the small MLP on procedural data, for tests
    "smoke": DenseSearchSpec(
        run=SMOKE, trials=4, startup_trials=2, warmup_range=(0, 20), batch_sizes=(32, 64)
    ),
    # minutes on 2 CPU cores: LeNet-300-100, 6 epochs per trial
    "quick": DenseSearchSpec(run=FASHION_MNIST, trials=20, startup_trials=6),
    # ResNet-20 on CIFAR-10, 160 epochs per trial; ASHA first judges a trial after 10 epochs
    "paper": DenseSearchSpec(
        run=CIFAR10,
        trials=64,
        startup_trials=16,
        lr_range=(0.02, 0.8),
        warmup_range=(0, 2000),
        weight_decay_range=(1e-5, 1e-3),
        grace_period=10,
    ),
}

EARLIEST_K = {
    # seconds: k in 0..50 on the small MLP, two levels (64% density)
    "smoke": EarliestKSearchSpec(
        run=SMOKE, trials=3, startup_trials=2, k_range=(0, 50), target_density=0.64, tolerance=0.05
    ),
    # minutes on 2 CPU cores: LeNet-300-100 trained 2 epochs per level, k in 0..500, to 16.8% density
    "quick": EarliestKSearchSpec(
        run=FASHION_MNIST.replace(training=FASHION_MNIST.training.replace(steps="2ep", milestones=("1ep",))),
        trials=8,
        startup_trials=4,
        k_range=(0, 500),
        target_density=0.2,
    ),
    # docs/experiments.md A1's range of k for ResNet-20 on CIFAR-10, to 8.6% density (11 levels)
    "paper": EarliestKSearchSpec(
        run=CIFAR10, trials=16, startup_trials=6, k_range=(0, 2000), target_density=0.1
    ),
}

SEARCHES = {
    "dense": Command(
        DENSE,
        "dense training settings that maximise validation accuracy",
        DenseSearchSpec,
        "earlyphase.tune.search:run_dense_search",
    ),
    "earliest_k": Command(
        EARLIEST_K,
        "the earliest rewind iteration k whose IMP subnetwork matches dense at a target density",
        EarliestKSearchSpec,
        "earlyphase.tune.search:run_earliest_k_search",
    ),
}

if __name__ == "__main__":
    sys.exit(main_with_commands("search", __doc__.splitlines()[0], SEARCHES))
