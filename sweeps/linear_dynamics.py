"""Early-time linear dynamics (Hu et al. 2020): a network and its linear model under full-batch GD.

    python sweeps/linear_dynamics.py                  # quick: Gaussian and Fashion-MNIST 0 vs 6, minutes
    python sweeps/linear_dynamics.py --preset paper   # 20k/2k Gaussian, CIFAR-10 cats vs horses 10k/2k
    python sweeps/linear_dynamics.py --tasks gaussian --widths 512 --activations tanh,softplus \\
        --trained-layer-sets first,second,both --kernel-input-dims 50,200

Writes dynamics.csv (both models' loss and accuracy and their discrepancy on a log-spaced grid of
steps) and kernel.csv (the NTK at init against the linear model's kernel, by input dimension d and
width m); docs/experiments.md C.
"""

import sys

from earlyphase.specs import DynamicsSpec
from earlyphase.sweep import DynamicsSweepSpec
from earlyphase.tune.cli import main

PRESETS = {
    # seconds: two small networks on Gaussian data, the kernel check at two d
    "smoke": DynamicsSweepSpec(
        dynamics=DynamicsSpec(
            input_dim=20, train_examples=200, test_examples=100, gd_steps=300, log_points=12
        ),
        widths=(32, 128),
        kernel_input_dims=(10, 40),
        kernel_widths=(64, 256),
        kernel_examples=100,
    ),
    # minutes on 2 CPU cores: d = 100 Gaussian and Fashion-MNIST T-shirt vs shirt (each at its default
    # lr, 4 and 0.5), two widths and activations; the kernel check at five d with n = 500 inputs
    "quick": DynamicsSweepSpec(
        dynamics=DynamicsSpec(train_examples=1000, test_examples=500, gd_steps=2000),
        tasks=("gaussian", "fashion_mnist"),
        widths=(128, 512),
        activations=("relu", "erf"),
        kernel_input_dims=(25, 50, 100, 200, 400),
        kernel_widths=(128, 512),
        kernel_examples=500,
    ),
    # the paper's data sizes; architectures, widths, lengths and the kernel grid are ours
    "paper": DynamicsSweepSpec(
        dynamics=DynamicsSpec(train_examples=20_000, test_examples=2_000, gd_steps=10_000, log_points=40),
        seeds=(0, 1, 2),
        tasks=("gaussian", "cifar10"),
        image_examples=(10_000, 2_000),
        architectures=("two_layer", "deep", "cnn"),
        widths=(256, 2048),
        activations=("relu", "erf"),
        trained_layer_sets=("first", "both"),
        kernel_input_dims=(50, 100, 200, 400, 800),
        kernel_widths=(1024, 4096),
        kernel_examples=2_000,
    ),
}

if __name__ == "__main__":
    sys.exit(
        main(
            "linear_dynamics",
            PRESETS,
            __doc__.splitlines()[0],
            spec_class=DynamicsSweepSpec,
            runner="earlyphase.tune.dynamics:run_dynamics_sweep",
        )
    )
