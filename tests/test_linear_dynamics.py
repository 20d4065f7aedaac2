import math
from dataclasses import replace

import pytest
import torch

from earlyphase.errors import SpecError
from earlyphase.linear_dynamics import (
    build_network,
    deep_expansion,
    dynamics_data,
    empirical_ntk,
    gaussian_moments,
    kernel_expansion,
    linear_model,
    log_step_grid,
    relative_spectral_error,
    run_dynamics,
    two_layer_expansion,
)
from earlyphase.specs import DynamicsSpec

torch.set_num_threads(1)


def test_gaussian_moments_match_closed_forms():
    relu = gaussian_moments("relu")
    inv_sqrt_2pi = 1 / math.sqrt(2 * math.pi)
    assert relu.zeta == pytest.approx(0.5, abs=1e-12)
    assert relu.mean == pytest.approx(inv_sqrt_2pi, abs=1e-12)
    assert relu.stein == pytest.approx(inv_sqrt_2pi, abs=1e-12)  # E[φ''] = density at 0
    assert relu.theta2 == pytest.approx(0.0, abs=1e-12)  # E[relu(sg)] is linear in s
    assert relu.second_moment == pytest.approx(0.5, abs=1e-12)
    erf = gaussian_moments("erf")
    assert erf.zeta == pytest.approx(2 / math.sqrt(3 * math.pi), abs=1e-12)
    assert erf.second_moment == pytest.approx(2 / math.pi * math.asin(2 / 3), abs=1e-12)
    assert erf.mean == pytest.approx(0.0, abs=1e-12) and erf.stein == pytest.approx(0.0, abs=1e-12)
    assert gaussian_moments("softplus").zeta == pytest.approx(0.5, abs=1e-12)  # E[sigmoid(g)] = 1/2
    assert gaussian_moments("tanh").mean == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_ntk_recursion_at_depth_one_reproduces_the_paper_constants(activation):
    for trained in ("first", "second", "both"):
        paper = two_layer_expansion(gaussian_moments(activation), trained)
        recursion = deep_expansion(activation, 1, trained)
        assert recursion.linear == pytest.approx(paper.linear, abs=1e-10)
        assert recursion.quadratic == pytest.approx(paper.quadratic, abs=1e-10)
        assert recursion.norm == pytest.approx(paper.norm, abs=1e-10)
        assert recursion.norm_residual == pytest.approx(0.0, abs=1e-10)


def _kernels(spec, seed=0):
    data = dynamics_data(spec, seed)
    network = build_network(spec, data.shape, seed)
    names = ["readout"] if spec.trained_layers == "second" else ["first"]
    return data, empirical_ntk(network, data.train_x, names)


def test_empirical_ntk_in_blocks_equals_the_two_layer_closed_forms():
    spec = DynamicsSpec(input_dim=6, hidden_width=5, train_examples=11, test_examples=2, activation="tanh")
    data = dynamics_data(spec, 0)
    network = build_network(spec, data.shape, 0)
    x, d, m = data.train_x, 6, 5
    hidden = torch.tanh(x @ network.first.detach().T / math.sqrt(d))
    slope = (1 - hidden**2) * network.readout.detach()  # v_r φ'(w_rᵀx/√d)
    second = hidden @ hidden.T / m  # Θ = Σ_r φ(u_r)φ(u_r')/m
    first = (x @ x.T / d) * (slope @ slope.T) / m  # Θ = (xᵀx'/d) Σ_r v_r² φ'(u_r)φ'(u_r')/m
    for names, size, expected in ((["readout"], m, second), (["first"], m * d, first)):
        for block_numbers in (3 * size, 2**24):  # blocks of 3 examples (the last of 2), or one block
            ntk = empirical_ntk(network, x, names, block_numbers)
            assert torch.allclose(ntk, expected, rtol=1e-12, atol=1e-14)
    both = empirical_ntk(network, x, ["first", "readout"], 4 * (m * d + m))
    assert torch.allclose(both, first + second, rtol=1e-12, atol=1e-14)


def test_learning_rate_defaults_to_the_tasks():
    assert DynamicsSpec().lr == 4.0 and DynamicsSpec(task="fashion_mnist").lr == 0.5
    assert DynamicsSpec(task="cifar10", dynamics_lr=2.0).lr == 2.0


def test_linear_kernel_matches_the_ntk_for_large_d_and_perturbed_constants_do_not():
    spec = DynamicsSpec(input_dim=1000, hidden_width=4096, train_examples=600, trained_layers="second")
    data, ntk = _kernels(spec)
    expansion = kernel_expansion(spec)

    def error(e):
        return relative_spectral_error(
            linear_model(spec, data.train_x, data.shape, e).kernel(data.train_x), ntk
        )

    assert error(expansion) < 0.05  # measured 0.038
    assert error(replace(expansion, norm=(1.1 * expansion.norm[0], *expansion.norm[1:]))) > 0.15  # 0.187


def test_first_layer_kernel_error_grows_when_zeta_is_perturbed():
    spec = DynamicsSpec(input_dim=200, hidden_width=256, train_examples=800, activation="softplus")
    data, ntk = _kernels(spec)
    expansion = kernel_expansion(spec)
    kernel = linear_model(spec, data.train_x, data.shape).kernel(data.train_x)
    perturbed = replace(expansion, linear=1.5 * expansion.linear)
    perturbed_kernel = linear_model(spec, data.train_x, data.shape, perturbed).kernel(data.train_x)
    assert relative_spectral_error(kernel, ntk) < 0.2  # measured 0.148: finite width and the diagonal
    assert relative_spectral_error(perturbed_kernel, ntk) > 0.3  # 0.375


SMALL = DynamicsSpec(input_dim=20, hidden_width=128, train_examples=200, test_examples=100, log_points=12)


def _discrepancy(table, split):
    rows = table[(table.metric == "discrepancy") & (table.split == split)]
    return rows.set_index("step").value


def test_discrepancy_at_step_zero_is_zero_with_centring_else_the_initial_output_rms():
    centred = run_dynamics(replace(SMALL, gd_steps=1), seed=3)
    assert _discrepancy(centred, "train")[0] == 0.0 and _discrepancy(centred, "test")[0] == 0.0
    raw = run_dynamics(replace(SMALL, gd_steps=1, center_output=False), seed=3)
    data = dynamics_data(SMALL, 3)
    network = build_network(SMALL, data.shape, 3)
    with torch.no_grad():
        rms = network(data.test_x).square().mean().sqrt().item()
    assert _discrepancy(raw, "test")[0] == pytest.approx(rms, rel=1e-12)
    assert rms > 0.3  # an O(1) output, not a vanishing one


def test_discrepancy_stays_small_early_and_grows_later_on_the_synthetic_task():
    table = run_dynamics(replace(SMALL, gd_steps=1000), seed=0)
    train = _discrepancy(table, "train")
    assert train[1] < 0.02 and train[4] < 0.05  # measured 0.009, 0.032
    assert train[1000] > 0.4 and train[1000] > 10 * train[4]  # 0.59
    final = table[(table.step == 1000) & (table.split == "train") & (table.metric == "loss")].set_index(
        "model"
    )
    assert final.value["network"] < final.value["linear"]  # the network leaves the linear model behind


def test_linear_gradient_descent_matches_the_closed_form_recursion():
    spec = replace(SMALL, trained_layers="both", gd_steps=300, dynamics_lr=2.0)
    data = dynamics_data(spec, 1)
    psi = linear_model(spec, data.train_x, data.shape).features(data.train_x)
    n = len(data.train_y)
    eigenvalues, vectors = torch.linalg.eigh(psi.T @ psi / n)
    b = vectors.T @ (psi.T @ data.train_y / n)
    table = run_dynamics(spec, 1, data)
    linear = table[(table.model == "linear") & (table.metric == "loss") & (table.split == "train")]
    for step, loss in zip(linear.step, linear.value):
        # β_t = Σ_k (1 − (1 − ηλ_k)^t) b_k/λ_k e_k from β_0 = 0 (b_k = 0 where λ_k = 0)
        decay = 1 - (1 - spec.dynamics_lr * eigenvalues) ** step
        factor = torch.where(
            eigenvalues > 1e-12, decay / eigenvalues.clamp_min(1e-12), spec.dynamics_lr * step
        )
        beta = vectors @ (factor * b)
        assert loss == pytest.approx(float((psi @ beta - data.train_y).square().mean() / 2), rel=1e-9)


def test_log_step_grid():
    assert log_step_grid(100, 4) == [0, 1, 10, 100]
    assert log_step_grid(3, 10) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"activation": "gelu"}, "unknown activation 'gelu'"),
        ({"architecture": "resnet"}, "unknown architecture"),
        ({"hidden_width": 0}, "hidden_width must be positive"),
        ({"dynamics_lr": 0.0}, "dynamics_lr must be positive"),
        ({"dynamics_lr": -1.0}, "dynamics_lr must be positive"),
        ({"task": "fashion_mnist", "classes": (3, 3)}, "two distinct labels"),
        ({"task": "fashion_mnist", "classes": (1, 10)}, "two distinct labels"),
        ({"task": "fashion_mnist", "classes": (1,)}, "two distinct labels"),
        ({"architecture": "cnn", "input_dim": 50}, "square input_dim"),
        ({"task": "cifar10", "train_examples": 20000}, "cifar10 has 10000 train and 2000 test images"),
        ({"task": "fashion_mnist", "test_examples": 2001}, "fashion_mnist has 12000 train and 2000 test"),
    ],
)
def test_bad_specs_raise_one_line(changes, message):
    with pytest.raises(SpecError, match=message) as error:
        DynamicsSpec(**changes)
    assert "\n" not in str(error.value)


def test_fashion_mnist_two_classes_are_centred_and_scaled():
    spec = DynamicsSpec(task="fashion_mnist", train_examples=300, test_examples=50)
    data = dynamics_data(spec, 0)
    assert data.train_x.shape == (300, 784) and data.shape == (1, 28, 28)
    assert data.train_x.mean(0).abs().max() < 1e-12
    assert data.train_x.square().sum(1).mean() == pytest.approx(784)
    assert set(data.train_y.tolist()) == {-1.0, 1.0}
