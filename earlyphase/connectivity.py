"""Linear mode connectivity: instability analysis (Frankle et al. 2020) and per-example barriers
(Paul et al. 2022), docs/experiments.md B.

From one state at iteration k, copies are trained to the end with different data orders
(:func:`train_copies`); the network (1 − α)·w_A + α·w_B is evaluated along the line. The error
barrier is the maximum over α of the error minus the mean of the two endpoints' errors; the copies
are linearly connected when it is at most a threshold (2 %). The per-example barrier is the loss at
the midpoint minus the mean of the endpoint losses, ℓᵢ(½(w_A + w_B)) − ½(ℓᵢ(w_A) + ℓᵢ(w_B)).

The whole state is interpolated, BatchNorm running statistics included (``bn="interpolate"``), or
the running statistics of every point are re-estimated on training batches (``bn="reestimate"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from earlyphase.data import TrainData
from earlyphase.errors import SpecError
from earlyphase.imp import IMP
from earlyphase.masks import Mask
from earlyphase.specs import RunSpec
from earlyphase.training import State, loss_accuracy

BN_MODES = ("interpolate", "reestimate")
# The two copies of a run with seed s see the data orders of seeds s + these: independent of every
# run's own order (s), of the pretraining draws (s + 2,000,000) and of each other.
COPY_DATA_SEED_OFFSETS = (3_000_000, 4_000_000)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def interpolate_states(a: State, b: State, alpha: float) -> State:
    """(1 − α)·a + α·b for every entry; exactly ``a`` at α = 0 and ``b`` at α = 1.

    Integer entries (BatchNorm's ``num_batches_tracked``) are interpolated and rounded to the
    nearest integer; they only matter to BatchNorm with cumulative averaging."""
    if set(a) != set(b):
        raise SpecError(f"states differ in their entries: {sorted(set(a) ^ set(b))}")
    state = {}
    for name, x in a.items():
        y = b[name]
        if x.is_floating_point():
            state[name] = (1 - alpha) * x + alpha * y
        else:
            state[name] = torch.round((1 - alpha) * x.double() + alpha * y.double()).to(x.dtype)
    return state


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, data: TrainData, batches: int) -> None:
    """Replace every BatchNorm's running statistics by their cumulative average over the training
    batches of iterations 0..``batches``-1 (forward passes in train mode, momentum=None)."""
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for iteration in range(batches):
            model(data.batch(iteration)[0])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


def _load(model: nn.Module, state: State, data: TrainData, bn: str, bn_batches: int) -> None:
    if bn not in BN_MODES:
        raise SpecError(f"unknown BatchNorm handling {bn!r}; choose one of {', '.join(BN_MODES)}")
    model.load_state_dict(state)
    if bn == "reestimate":
        if bn_batches < 1:
            raise SpecError(f"bn_batches must be >= 1 to re-estimate BatchNorm, got {bn_batches}")
        reestimate_batchnorm(model, data, bn_batches)


def path_barrier(values: Sequence[float]) -> float:
    """max over the path − mean of its two endpoints (the first and last values)."""
    return max(values) - (values[0] + values[-1]) / 2


@dataclass(frozen=True)
class LinearPath:
    """Errors and mean losses along (1 − α)·w_A + α·w_B, one entry per α (train: un-augmented)."""

    alpha: tuple[float, ...]
    test_error: tuple[float, ...]
    test_loss: tuple[float, ...]
    train_error: tuple[float, ...]
    train_loss: tuple[float, ...]
    threshold: float

    @property
    def test_barrier(self) -> float:
        return path_barrier(self.test_error)

    @property
    def train_barrier(self) -> float:
        return path_barrier(self.train_error)

    @property
    def connected(self) -> bool:
        """Linearly connected (stable): the test error barrier is at most the threshold."""
        return self.test_barrier <= self.threshold

    def rows(self) -> list[dict[str, float]]:
        """One tidy row per α."""
        columns = ("alpha", "test_error", "test_loss", "train_error", "train_loss")
        return [dict(zip(columns, values)) for values in zip(*(getattr(self, c) for c in columns))]


def error_barrier(
    model: nn.Module,
    state_a: State,
    state_b: State,
    data: TrainData,
    *,
    points: int = 30,
    bn: str = "interpolate",
    bn_batches: int = 20,
    threshold: float = 0.02,
    train_examples: int | None = None,
) -> LinearPath:
    """Evaluate ``points`` evenly spaced α in [0, 1] (ends included) on the test set and the first
    ``train_examples`` (default all) un-augmented training examples. ``model`` (of the states'
    architecture) is overwritten."""
    if points < 2:
        raise SpecError(f"the α grid needs at least 2 points, got {points}")
    columns: dict[str, list[float]] = {"test_error": [], "test_loss": [], "train_error": [], "train_loss": []}
    alphas = torch.linspace(0, 1, points).tolist()
    for alpha in alphas:
        _load(model, interpolate_states(state_a, state_b, alpha), data, bn, bn_batches)
        model.eval()
        for split, limit in (("test", None), ("train", train_examples)):
            loss, accuracy = loss_accuracy(model, data.eval_batches(split), data.device, limit)
            columns[f"{split}_error"].append(1 - accuracy.item())
            columns[f"{split}_loss"].append(loss.item())
    return LinearPath(tuple(alphas), **{k: tuple(v) for k, v in columns.items()}, threshold=threshold)


@torch.no_grad()
def example_losses(model: nn.Module, data: TrainData, split: str = "train") -> torch.Tensor:
    """Cross-entropy of every un-augmented example of ``split``, in eval mode, as (N,)."""
    was_training = model.training
    model.eval()
    try:
        batches = data.eval_batches(split)
        return torch.cat([F.cross_entropy(model(x).float(), y, reduction="none") for x, y in batches])
    finally:
        model.train(was_training)


def example_barriers(
    model: nn.Module,
    state_a: State,
    state_b: State,
    data: TrainData,
    *,
    bn: str = "interpolate",
    bn_batches: int = 20,
) -> torch.Tensor:
    """ℓᵢ(½(w_A + w_B)) − ½(ℓᵢ(w_A) + ℓᵢ(w_B)) for every training example, as (N,) on the CPU."""
    losses = []
    for state in (state_a, state_b, interpolate_states(state_a, state_b, 0.5)):
        _load(model, state, data, bn, bn_batches)
        losses.append(example_losses(model, data))
    loss_a, loss_b, loss_mid = losses
    return (loss_mid - (loss_a + loss_b) / 2).cpu()


def fraction_connected(barriers: torch.Tensor, eps: float = 0.0) -> float:
    """The fraction of examples whose barrier is at most ``eps``."""
    if barriers.numel() == 0:
        raise SpecError("no per-example barriers")
    return (barriers <= eps).float().mean().item()


def copy_data_seeds(seed: int) -> tuple[int, int]:
    """The data seeds of the two copies trained from a state of the run with ``seed``."""
    return tuple(seed + offset for offset in COPY_DATA_SEED_OFFSETS)


def train_copies(
    run_spec: RunSpec,
    start_state: State,
    start_iteration: int,
    init_seed: int,
    data_seeds: Sequence[int],
    mask: Mask | None = None,
    device: torch.device | str | None = None,
    data_dir: str | None = None,
) -> tuple[State, ...]:
    """Train one copy of ``start_state`` (the state at ``start_iteration``, optionally a ``mask``ed
    subnetwork) to the end per data seed; the copies differ only in the data order,
    ``TrainData(spec.data, data_seed)``. ``init_seed`` is the run's seed (the architecture's)."""
    if len(data_seeds) < 1:
        raise SpecError("train_copies needs at least one data seed")
    states = []
    for data_seed in data_seeds:
        imp = IMP(run_spec, init_seed, device, data_dir, data_seed=data_seed)
        copy_mask = imp.dense_mask(imp.new_model()) if mask is None else mask
        states.append(imp.train_subnetwork(0, start_iteration, start_state, copy_mask).state)
    return tuple(states)
