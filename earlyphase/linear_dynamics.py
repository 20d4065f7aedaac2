"""Early-time learning dynamics and their linear model (Hu, Xiao, Adlam & Pennington 2020, arXiv 2006.14599).

Networks in the NTK parameterisation, all parameters N(0, 1): the first layer acts on patches x_p ∈ R^k
(fully connected: one patch, x itself, k = d), then ``depth - 1`` hidden layers applied per patch, a
mean over patches and a linear read-out::

    h¹_p = W¹ x_p / √k,   h^{l+1}_p = W^{l+1} φ(h^l_p) / √m,   f(x) = vᵀ mean_p φ(h^L_p) / √m.

``two_layer`` is depth 1 on one patch, f(x) = (1/√m) Σ_r v_r φ(w_rᵀx/√d); ``deep`` is depth L on one
patch; ``cnn`` uses square patches (a strided convolution, 1×1 convolutions, global average pooling).

Derivation of the linear model. Full-batch GD on L = (1/2n) Σ (f(x_i) − y_i)² moves the training outputs
by f ← f − (η/n) Θ (f − y) to first order, Θ the NTK of the trained parameters. A linear model
f_lin(x) = βᵀψ(x), β₀ = 0, under the same GD moves by f_lin ← f_lin − (η/n) ΨΨᵀ (f_lin − y): the two
agree while Θ ≈ ΨΨᵀ, so ψ must reproduce the NTK at init (no extra scale with these conventions).

At infinite width, for two inputs with s = ‖x‖/√d, s' and c = xᵀx'/d, the two-layer NTK is
Θ_first = c E[φ'(u)φ'(u')] and Θ_second = E[φ(u)φ(u')], (u, u') centred Gaussian with variances s², s'²
and covariance c. For distinct well-behaved inputs c and s − 1 are O(d^-½); Mehler's expansion
E[F(u)G(u')] = Σ_k c^k/k! E[F^(k)(u)] E[G^(k)(u')], keeping every term whose n×n matrix has spectral norm
of order n/d or more, gives (g ~ N(0, 1))

    Θ_first  ≈ ζ² c + E[φ'(g)g]² c²,                    ζ = E[φ'(g)]
    Θ_second ≈ h(s)h(s') + ζ² c + ½ E[φ'(g)g]² c²,      h(s) = E[φ(sg)] ≈ ϑ₀ + ϑ₁(s−1) + ϑ₂(s−1)²

with ϑ₀ = E[φ(g)], ϑ₁ = E[φ'(g)g], ϑ₂ = ½E[φ''(g)g²]. The matrix of c_ij² is close to its off-diagonal
mean c̄² times 11ᵀ (c̄² = tr Σ²/d² for x ~ N(0, Σ)): the paper's ν²/d with ν = E[φ'(g)g] √(tr Σ²/d).
Hence Θ ≈ ψ(x)ᵀψ(x') with

    ψ(x) = [√a · x/√d,  √(b c̄²),  h(s),  √r · (s − 1)]

where a (``linear``), b (``quadratic``), the norm polynomial h and r (``norm_residual``) are read off the
expansion of the kernel K(s, s', c) at (1, 1, 0): a = ∂_c K, b = ½∂²_c K, h = √K₀ + (∂_s K/√K₀)(s−1) +
(½∂²_s K/√K₀)(s−1)², r = ∂_s∂_s' K − (∂_s K)²/K₀ (clipped at 0). Two layers, first trained: a = ζ²,
b = E[φ'g]², h = 0 (ψ = [ζx/√d, ν/√d], the paper's ψ₁); second: a = ζ², b = ½E[φ'g]², h as above;
both: the kernels add (equivalent to concatenating the two feature maps). Deeper networks: K is the
infinite-width NTK recursion, computed by 2-D quadrature and differentiated by autograd. CNN: the kernel
is the average over patch pairs of the per-patch kernel, so ψ(x) = mean_p ψ(x_p) with d → k and c̄² the
mean squared correlation of patches of distinct inputs (an approximation that needs k large). What the
expansion misses is mainly the diagonal (i = j): O(1)·I against ‖Θ‖ ≍ n/d, small when n ≫ d.

The network's f_0 is O(1) and random while the linear model starts at 0. With ``center_output`` (the
default) the network trains and is measured as f − f_0 (same NTK), so the discrepancy at step 0 is
exactly 0; without it the step-0 discrepancy is the RMS of f_0 on that split.

Gaussian moments are integrated by Gauss–Legendre rules on [−12σ, 0] and [0, 12σ] against the Gaussian
density: machine precision for ReLU, whose kink at 0 slows Gauss–Hermite to O(1/N) (8e-4 at 200 nodes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from numpy.polynomial.legendre import leggauss
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from earlyphase.data import load_split
from earlyphase.errors import SpecError
from earlyphase.specs import DynamicsSpec

DTYPE = torch.float64
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "softplus": F.softplus,
}
QUADRATURE_NODES = 48  # Gauss–Legendre nodes per half line
QUADRATURE_RANGE = 12.0  # integrate over ±12 standard deviations
CORRELATION_EXAMPLES = 1000  # inputs used to estimate the mean squared correlation c̄²


# --- Gaussian moments -------------------------------------------------------------------------------


def _half_line_rule(scale: float, nodes: int = QUADRATURE_NODES) -> tuple[Tensor, Tensor]:
    """Points and weights of Gauss–Legendre on [−R, 0] ∪ [0, R], R = QUADRATURE_RANGE · scale."""
    x, w = leggauss(nodes)
    half = QUADRATURE_RANGE * scale / 2
    points = np.concatenate([(x - 1) * half, (x + 1) * half])
    return torch.tensor(points, dtype=DTYPE), torch.tensor(np.concatenate([w, w]) * half, dtype=DTYPE)


@dataclass(frozen=True)
class GaussianMoments:
    """Moments of φ(g), g ~ N(0, 1); derivatives moved onto the density (Stein) so any φ works."""

    mean: float  # ϑ₀ = E[φ(g)]
    zeta: float  # ζ = E[φ'(g)] = E[φ(g) g]
    stein: float  # ϑ₁ = E[φ'(g) g] = E[φ''(g)] = E[φ(g)(g² − 1)]
    theta2: float  # ϑ₂ = ½ E[φ''(g) g²] = ½ E[φ(g)(g⁴ − 5g² + 2)]
    second_moment: float  # E[φ(g)²]: the variance of a two-layer network's output at init


def gaussian_moments(activation: str, nodes: int = QUADRATURE_NODES) -> GaussianMoments:
    """The activation's Gaussian moments by quadrature."""
    g, w = _half_line_rule(1.0, nodes)
    w = w * torch.exp(-(g**2) / 2) / math.sqrt(2 * math.pi)
    phi = ACTIVATIONS[activation](g)
    return GaussianMoments(
        mean=float(w @ phi),
        zeta=float(w @ (phi * g)),
        stein=float(w @ (phi * (g**2 - 1))),
        theta2=float(w @ (phi * (g**4 - 5 * g**2 + 2))) / 2,
        second_moment=float(w @ phi**2),
    )


# --- the kernel expansion ------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelExpansion:
    """K(x, x') ≈ a c + b c̄² + h(s)h(s') + r (s−1)(s'−1) for distinct inputs (see the module docstring)."""

    linear: float  # a
    quadratic: float  # b
    norm: tuple[float, float, float]  # h(s) = norm[0] + norm[1](s−1) + norm[2](s−1)²
    norm_residual: float  # r


def two_layer_expansion(moments: GaussianMoments, trained_layers: str) -> KernelExpansion:
    """The paper's constants for f(x) = vᵀφ(Wx/√d)/√m."""
    a, b = moments.zeta**2, moments.stein**2
    norm = (moments.mean, moments.stein, moments.theta2)
    if trained_layers == "first":
        return KernelExpansion(a, b, (0.0, 0.0, 0.0), 0.0)
    if trained_layers == "second":
        return KernelExpansion(a, b / 2, norm, 0.0)
    return KernelExpansion(2 * a, 1.5 * b, norm, 0.0)


def _pair_moments(phi, cov: tuple[Tensor, Tensor, Tensor], grid: tuple[Tensor, Tensor, Tensor]):
    """E[φ(u)²], E[φ(u')²], E[φ(u)φ(u')] and E[φ'(u)φ'(u')] for (u, u') ~ N(0, [[q, c], [c, q']]).

    The density carries the dependence on the covariance, so autograd differentiates the rule exactly;
    E[φ'φ'] = ∂_c E[φφ'] (Price) = E[φφ' ((Σ⁻¹z)₁(Σ⁻¹z)₂ − (Σ⁻¹)₁₂)].
    """
    q1, q2, c = cov
    z1, z2, w = grid
    det = q1 * q2 - c**2
    a1, a2 = (q2 * z1 - c * z2) / det, (q1 * z2 - c * z1) / det  # Σ⁻¹z
    density = torch.exp(-(z1 * a1 + z2 * a2) / 2) / (2 * math.pi * torch.sqrt(det))
    f1, f2 = phi(z1), phi(z2)
    weight = w * density
    cross = weight * f1 * f2
    return (weight @ f1**2, weight @ f2**2, cross.sum(), cross @ (a1 * a2 + c / det))


def ntk_function(activation: str, depth: int, trained_layers: str, nodes: int = QUADRATURE_NODES):
    """The infinite-width NTK of the fully connected network as a function of (s, s', c)."""
    phi = ACTIVATIONS[activation]
    g, w = _half_line_rule(1.0, nodes)
    gauss = torch.exp(-(g**2) / 2) / math.sqrt(2 * math.pi)
    grids, variance = [], 1.0
    for _ in range(depth):
        points, weights = _half_line_rule(math.sqrt(variance), nodes)
        z1, z2 = torch.meshgrid(points, points, indexing="ij")
        grids.append((z1.flatten(), z2.flatten(), torch.outer(weights, weights).flatten()))
        variance = float((w * gauss) @ phi(math.sqrt(variance) * g) ** 2)

    def kernel(point: Tensor) -> Tensor:
        s1, s2, c = point
        cov, inputs, dots = (s1**2, s2**2, c), [c], []
        for grid in grids:
            q1, q2, cross, dot = _pair_moments(phi, cov, grid)
            cov = (q1, q2, cross)
            inputs.append(cross)
            dots.append(dot)
        if trained_layers == "second":
            return inputs[-1]
        tails = [math.prod(dots[layer:], start=torch.ones((), dtype=DTYPE)) for layer in range(depth)]
        if trained_layers == "first":
            return inputs[0] * tails[0]
        return sum(inputs[layer] * tails[layer] for layer in range(depth)) + inputs[-1]

    return kernel


def deep_expansion(activation: str, depth: int, trained_layers: str) -> KernelExpansion:
    """Expansion coefficients of the deep network's NTK, from its derivatives at (s, s', c) = (1, 1, 0)."""
    kernel = ntk_function(activation, depth, trained_layers)
    point = torch.tensor([1.0, 1.0, 0.0], dtype=DTYPE)
    k0 = float(kernel(point))
    gradient = torch.autograd.functional.jacobian(kernel, point)
    hessian = torch.autograd.functional.hessian(kernel, point)
    linear, quadratic = float(gradient[2]), max(float(hessian[2, 2]) / 2, 0.0)  # ≥ 0 up to rounding
    if k0 <= 1e-12:
        return KernelExpansion(linear, quadratic, (0.0, 0.0, 0.0), max(float(hessian[0, 1]), 0.0))
    root = math.sqrt(k0)
    norm = (root, float(gradient[0]) / root, float(hessian[0, 0]) / 2 / root)
    return KernelExpansion(linear, quadratic, norm, max(float(hessian[0, 1]) - norm[1] ** 2, 0.0))


def kernel_expansion(spec: DynamicsSpec) -> KernelExpansion:
    """Paper constants for one hidden layer (two_layer, cnn of depth 1), the NTK recursion otherwise."""
    if spec.hidden_layers == 1:
        return two_layer_expansion(gaussian_moments(spec.activation), spec.trained_layers)
    return deep_expansion(spec.activation, spec.hidden_layers, spec.trained_layers)


# --- patches, the linear model ---------------------------------------------------------------------


class Patches:
    """Flattened inputs → (n, P, k) patches: square ``size`` patches at ``stride``, or the whole input."""

    def __init__(self, shape: tuple[int, int, int], size: int | None = None, stride: int | None = None):
        numel = math.prod(shape)
        if size is None:
            self.index = torch.arange(numel).unsqueeze(0)
        else:
            if size > min(shape[1:]):
                raise SpecError(f"patch_size {size} exceeds the {shape[1]}x{shape[2]} input")
            positions = torch.arange(numel, dtype=DTYPE).view(1, *shape)
            self.index = F.unfold(positions, size, stride=stride)[0].T.long()

    @property
    def count(self) -> int:
        return self.index.shape[0]

    @property
    def dim(self) -> int:
        return self.index.shape[1]

    def __call__(self, x: Tensor) -> Tensor:
        return x[..., self.index]


def network_patches(spec: DynamicsSpec, shape: tuple[int, int, int]) -> Patches:
    return (
        Patches(shape, spec.patch_size, spec.patch_stride) if spec.architecture == "cnn" else Patches(shape)
    )


def mean_square_correlation(patches: Tensor, chunk: int = 100) -> float:
    """c̄²: mean of (x_pᵀx'_p'/k)² over patches p, p' of distinct inputs; patches (n, P, k).

    Σ_{i≠j} ⟨M_i, M_j⟩ with M_i = Σ_p x_p x_pᵀ is ‖Σ_i M_i‖²_F − Σ_i ‖M_i‖²_F, and ‖M_i‖_F equals the
    Frobenius norm of the P×P Gram matrix of input i's patches.
    """
    n, count, dim = patches.shape
    total = patches.reshape(-1, dim)
    same = sum(
        float((block @ block.transpose(1, 2)).square().sum())
        if count <= dim
        else float((block.transpose(1, 2) @ block).square().sum())
        for block in patches.split(chunk)
    )
    cross = float((total.T @ total).square().sum()) - same
    return cross / (n * (n - 1) * count**2 * dim**2)


@dataclass(frozen=True)
class LinearModel:
    """ψ(x) = mean_p [√a x_p/√k, √(b c̄²), h(s_p), √r (s_p − 1)], s_p = ‖x_p‖/√k; f_lin = βᵀψ(x)."""

    expansion: KernelExpansion
    mean_square_correlation: float
    patches: Patches

    def features(self, x: Tensor) -> Tensor:
        e, p = self.expansion, self.patches(x)
        dim = p.shape[-1]
        delta = p.norm(dim=-1, keepdim=True) / math.sqrt(dim) - 1
        columns = [
            math.sqrt(e.linear) * p / math.sqrt(dim),
            torch.full_like(delta, math.sqrt(e.quadratic * self.mean_square_correlation)),
            e.norm[0] + e.norm[1] * delta + e.norm[2] * delta**2,
            math.sqrt(e.norm_residual) * delta,
        ]
        return torch.cat(columns, dim=-1).mean(dim=-2)

    def kernel(self, x: Tensor) -> Tensor:
        psi = self.features(x)
        return psi @ psi.T


def linear_model(
    spec: DynamicsSpec,
    train_x: Tensor,
    shape: tuple[int, int, int],
    expansion: KernelExpansion | None = None,
) -> LinearModel:
    """The linear model matching the network of ``spec`` (c̄² from the training inputs)."""
    patches = network_patches(spec, shape)
    correlation = mean_square_correlation(patches(train_x[:CORRELATION_EXAMPLES]))
    return LinearModel(expansion or kernel_expansion(spec), correlation, patches)


# --- the network ---------------------------------------------------------------------------------


class ScaledNetwork(nn.Module):
    """f(x) = vᵀ mean_p φ(h^L_p)/√m in the NTK parameterisation (module docstring); parameters N(0, 1)."""

    def __init__(self, patches: Patches, width: int, depth: int, activation: str, generator: torch.Generator):
        super().__init__()
        self.patches, self.phi = patches, ACTIVATIONS[activation]

        def normal(*size: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*size, generator=generator, dtype=DTYPE))

        self.first = normal(width, patches.dim)
        self.hidden = nn.ParameterList([normal(width, width) for _ in range(depth - 1)])
        self.readout = normal(width)

    def forward(self, x: Tensor) -> Tensor:
        h = self.phi(self.patches(x) @ self.first.T / math.sqrt(self.first.shape[1]))
        for weight in self.hidden:
            h = self.phi(h @ weight.T / math.sqrt(weight.shape[1]))
        return h.mean(dim=-2) @ self.readout / math.sqrt(self.readout.shape[0])


def build_network(spec: DynamicsSpec, shape: tuple[int, int, int], seed: int) -> ScaledNetwork:
    generator = torch.Generator().manual_seed(seed)
    patches = network_patches(spec, shape)
    return ScaledNetwork(patches, spec.hidden_width, spec.hidden_layers, spec.activation, generator)


def trained_parameter_names(network: ScaledNetwork, trained_layers: str) -> list[str]:
    """first: the input layer; second: the read-out; both: every layer."""
    if trained_layers == "first":
        return ["first"]
    if trained_layers == "second":
        return ["readout"]
    return [name for name, _ in network.named_parameters()]


# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DynamicsData:
    """Centred inputs (flattened, float64, mean ‖x‖² = d on train) and ±1 labels."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    shape: tuple[int, int, int]


def gaussian_labels(x: Tensor, labelling: str, generator: torch.Generator) -> Tensor:
    """z_k = u_kᵀx/‖u_k‖ for three random directions; linear: sign(z₁), quadratic: sign(z₂z₃),
    mixed: sign(z₁ + z₂z₃) (a linear part the linear model learns, a part only the network can)."""
    directions = torch.randn(3, x.shape[1], generator=generator, dtype=DTYPE)
    z = x @ (directions / directions.norm(dim=1, keepdim=True)).T
    score = {"linear": z[:, 0], "quadratic": z[:, 1] * z[:, 2], "mixed": z[:, 0] + z[:, 1] * z[:, 2]}
    return torch.where(score[labelling] >= 0, 1.0, -1.0).to(DTYPE)


def _two_classes(spec: DynamicsSpec, train: bool, count: int, generator, data_dir) -> tuple[Tensor, Tensor]:
    images, labels = load_split(spec.task, train, data_dir)
    negative, positive = spec.class_pair
    chosen = torch.nonzero((labels == negative) | (labels == positive)).squeeze(1)
    if count > len(chosen):
        split = "train" if train else "test"
        raise SpecError(
            f"{spec.task} classes {negative} and {positive} have {len(chosen)} {split} images, not {count}"
        )
    chosen = chosen[torch.randperm(len(chosen), generator=generator)[:count]]
    x = images[chosen].reshape(count, -1).to(DTYPE) / 255
    return x, torch.where(labels[chosen] == positive, 1.0, -1.0).to(DTYPE)


def dynamics_data(spec: DynamicsSpec, seed: int, data_dir: str | None = None) -> DynamicsData:
    """Gaussian inputs x ~ N(0, I_d) labelled by ``spec.labelling``, or two classes of an image task."""
    generator = torch.Generator().manual_seed(seed)
    if spec.task == "gaussian":
        side = round(math.sqrt(spec.input_dim))
        shape = (1, side, side) if spec.architecture == "cnn" else (1, 1, spec.input_dim)
        x = torch.randn(
            spec.train_examples + spec.test_examples, spec.input_dim, generator=generator, dtype=DTYPE
        )
        y = gaussian_labels(x, spec.labelling, generator)
        train_x, test_x = x.split([spec.train_examples, spec.test_examples])
        train_y, test_y = y.split([spec.train_examples, spec.test_examples])
    else:
        images, _ = load_split(spec.task, False, data_dir)
        shape = tuple(images.shape[1:])
        train_x, train_y = _two_classes(spec, True, spec.train_examples, generator, data_dir)
        test_x, test_y = _two_classes(spec, False, spec.test_examples, generator, data_dir)
    mean = train_x.mean(0)
    scale = math.sqrt(train_x.shape[1] / (train_x - mean).square().sum(1).mean())
    return DynamicsData((train_x - mean) * scale, train_y, (test_x - mean) * scale, test_y, shape)


# --- gradient descent on both models -------------------------------------------------------------


def log_step_grid(steps: int, points: int) -> list[int]:
    """0 and ``points − 1`` log-spaced steps from 1 to ``steps`` (duplicates after rounding merged)."""
    return sorted({0, *np.rint(np.geomspace(1, steps, points - 1)).astype(int).tolist()})


def _metric_rows(step: int, split: str, y: Tensor, network: Tensor, linear: Tensor) -> list[tuple]:
    """Loss ½·mean (f − y)², accuracy mean[f·y > 0] (an output of exactly 0 counts as wrong), discrepancy."""
    rows = [(step, split, "both", "discrepancy", float((network - linear).square().mean().sqrt()))]
    for model, output in (("network", network), ("linear", linear)):
        rows.append((step, split, model, "loss", float((output - y).square().mean() / 2)))
        rows.append((step, split, model, "accuracy", float((output * y > 0).to(DTYPE).mean())))
    return rows


def run_dynamics(spec: DynamicsSpec, seed: int, data: DynamicsData | None = None) -> pd.DataFrame:
    """Full-batch GD on ½·mean (f − y)², same data, lr and steps for the network and its linear model.

    Returns a tidy table (step, split, model ∈ {network, linear, both}, metric, value): loss and accuracy
    per model, and for ``both`` the discrepancy (mean_i (f_t(x_i) − f_lin,t(x_i))²)^½, on the grid
    :func:`log_step_grid`.
    """
    data = data or dynamics_data(spec, seed)
    network = build_network(spec, data.shape, seed)
    model = linear_model(spec, data.train_x, data.shape)
    names = trained_parameter_names(network, spec.trained_layers)
    trained = [p for name, p in network.named_parameters() if name in names]
    for name, parameter in network.named_parameters():
        parameter.requires_grad_(name in names)
    psi_train, psi_test = model.features(data.train_x), model.features(data.test_x)
    beta = torch.zeros(psi_train.shape[1], dtype=DTYPE)
    with torch.no_grad():
        offset_train = network(data.train_x) if spec.center_output else torch.zeros_like(data.train_y)
        offset_test = network(data.test_x) if spec.center_output else torch.zeros_like(data.test_y)
    grid, rows, n = set(log_step_grid(spec.gd_steps, spec.log_points)), [], len(data.train_y)
    for step in range(spec.gd_steps + 1):
        output = network(data.train_x) - offset_train
        if step in grid:
            with torch.no_grad():
                test_output = network(data.test_x) - offset_test
            rows += _metric_rows(step, "train", data.train_y, output.detach(), psi_train @ beta)
            rows += _metric_rows(step, "test", data.test_y, test_output, psi_test @ beta)
        if step == spec.gd_steps:
            break
        gradients = torch.autograd.grad((output - data.train_y).square().mean() / 2, trained)
        with torch.no_grad():
            for parameter, gradient in zip(trained, gradients):
                parameter -= spec.lr * gradient
        beta = beta - spec.lr * psi_train.T @ (psi_train @ beta - data.train_y) / n
    return pd.DataFrame(rows, columns=["step", "split", "model", "metric", "value"])


# --- the kernel check ----------------------------------------------------------------------------


def empirical_ntk(
    network: nn.Module, x: Tensor, parameter_names: list[str], block_numbers: int = 2**24
) -> Tensor:
    """Θ_ij = Σ_θ ∂f(x_i)/∂θ · ∂f(x_j)/∂θ over the named parameters, from per-example Jacobians.

    Built from blocks of examples whose Jacobians hold at most ``block_numbers`` numbers (128 MiB in
    float64); a pair of blocks is recomputed for each product, so memory stays at two blocks however
    many inputs there are (a first layer of m·d weights on n inputs would otherwise need n·m·d numbers).
    """
    params = {name: p.detach() for name, p in network.named_parameters()}
    trained = {name: params[name] for name in parameter_names}

    def output(theta: dict[str, Tensor], example: Tensor) -> Tensor:
        return functional_call(network, {**params, **theta}, (example.unsqueeze(0),)).squeeze(0)

    jacobian = vmap(jacrev(output), in_dims=(None, 0))

    def block_jacobian(block: Tensor) -> Tensor:
        return torch.cat([j.reshape(len(block), -1) for j in jacobian(trained, block).values()], dim=1)

    size = sum(trained[name].numel() for name in parameter_names)
    chunk = max(1, min(len(x), block_numbers // size))
    blocks = x.split(chunk)
    starts = [i * chunk for i in range(len(blocks))]
    ntk = x.new_empty(len(x), len(x))
    for a, (start_a, block_a) in enumerate(zip(starts, blocks)):
        j_a = block_jacobian(block_a)
        for b in range(a, len(blocks)):
            j_b = j_a if b == a else block_jacobian(blocks[b])
            product = j_a @ j_b.T
            ntk[start_a : start_a + len(block_a), starts[b] : starts[b] + len(blocks[b])] = product
            ntk[starts[b] : starts[b] + len(blocks[b]), start_a : start_a + len(block_a)] = product.T
    return ntk


def relative_spectral_error(kernel: Tensor, reference: Tensor) -> float:
    """‖reference − kernel‖₂ / ‖reference‖₂."""
    return float(
        torch.linalg.matrix_norm(reference - kernel, ord=2) / torch.linalg.matrix_norm(reference, ord=2)
    )


def kernel_check(
    spec: DynamicsSpec, seed: int, data: DynamicsData | None = None, expansion: KernelExpansion | None = None
) -> float:
    """Relative spectral error of the linear model's kernel against the network's NTK at init, on the
    training inputs."""
    data = data or dynamics_data(spec, seed)
    network = build_network(spec, data.shape, seed)
    ntk = empirical_ntk(network, data.train_x, trained_parameter_names(network, spec.trained_layers))
    return relative_spectral_error(
        linear_model(spec, data.train_x, data.shape, expansion).kernel(data.train_x), ntk
    )


def kernel_error_table(
    spec: DynamicsSpec, seed: int, widths: tuple[int, ...], input_dims: tuple[int, ...] = ()
) -> pd.DataFrame:
    """The kernel check for each width m and (gaussian task) input dimension d, on ``train_examples``
    inputs: columns task, architecture, activation, trained_layers, input_dim, hidden_width, examples,
    relative_error. Without ``input_dims`` the spec's own task is used once per width."""
    rows = []
    for dim in input_dims or (None,):
        base = spec if dim is None else replace(spec, input_dim=dim)
        data = dynamics_data(base, seed)
        for width in widths:
            error = kernel_check(replace(base, hidden_width=width), seed, data)
            rows.append(
                (
                    spec.task,
                    spec.architecture,
                    spec.activation,
                    spec.trained_layers,
                    data.train_x.shape[1],
                    width,
                    len(data.train_y),
                    error,
                )
            )
    columns = [
        "task",
        "architecture",
        "activation",
        "trained_layers",
        "input_dim",
        "hidden_width",
        "examples",
        "relative_error",
    ]
    return pd.DataFrame(rows, columns=columns)
