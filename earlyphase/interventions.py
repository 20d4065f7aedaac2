"""Interventions: what a branch trial does to the IMP subnetwork before training it from k.

Each intervention is a named function of a :class:`BranchStart` (the full state at rewind
iteration k, the state at iteration 0, the level's mask, a fresh initialisation and a seeded
generator) returning the state and mask to train; none mutates its inputs. Non-prunable state
(BatchNorm, biases, running statistics) stays at its iteration-k value unless the intervention
says otherwise. Interventions that rewrite the prunable weights (those named in the mask) set
the pruned positions to exactly 0 and use sign(0) = +1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from earlyphase.errors import SpecError
from earlyphase.masks import Mask, random_prune
from earlyphase.models import kaiming_std
from earlyphase.training import State


@dataclass(frozen=True)
class BranchStart:
    """The inputs every intervention may use."""

    state_k: State
    state_0: State
    mask: Mask
    fresh_state: Callable[[], State]
    seed: int

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


Intervention = Callable[[BranchStart], tuple[State, Mask]]


def _sign(weight: torch.Tensor) -> torch.Tensor:
    """±1 per position, with sign(0) = +1."""
    return torch.where(weight >= 0, 1.0, -1.0).to(weight.dtype)


def _rewrite(start: BranchStart, weights: dict[str, torch.Tensor]) -> tuple[State, Mask]:
    """state_k with the prunable ``weights`` replaced, their pruned positions set to exactly 0."""
    state = dict(start.state_k)
    for name, weight in weights.items():
        keep = start.mask[name].to(weight.device)
        state[name] = torch.where(keep, weight, torch.zeros_like(weight))
    return state, start.mask


def none(start: BranchStart) -> tuple[State, Mask]:
    """IMP itself: the subnetwork rewound to k."""
    return dict(start.state_k), start.mask


def random_prune_per_layer(start: BranchStart) -> tuple[State, Mask]:
    """Random pruning (Figure 1's baseline, OpenLTH's default): a uniformly random mask keeping each
    layer's kept count, weights at k."""
    return dict(start.state_k), random_prune(start.mask, start.seed, layerwise=True)


def random_prune_global(start: BranchStart) -> tuple[State, Mask]:
    """Random pruning over the whole network: a uniformly random mask with the same kept count over
    all layers together (layers' counts change), weights at k."""
    return dict(start.state_k), random_prune(start.mask, start.seed)


def random_reinit(start: BranchStart) -> tuple[State, Mask]:
    """Random re-initialisation: the same mask on a freshly initialised network (all of its state)."""
    return start.fresh_state(), start.mask


def _signs_magnitudes(start: BranchStart, signs: State, magnitudes: State) -> tuple[State, Mask]:
    return _rewrite(start, {n: _sign(signs[n]) * magnitudes[n].abs() for n in start.mask})


def signs_0_magnitudes_0(start: BranchStart) -> tuple[State, Mask]:
    """Kept weights at iteration 0 (signs and magnitudes from 0), everything else at k."""
    return _signs_magnitudes(start, start.state_0, start.state_0)


def signs_0_magnitudes_k(start: BranchStart) -> tuple[State, Mask]:
    """Kept weights with the signs at iteration 0 and the magnitudes at k."""
    return _signs_magnitudes(start, start.state_0, start.state_k)


def signs_k_magnitudes_0(start: BranchStart) -> tuple[State, Mask]:
    """Kept weights with the signs at k and the magnitudes at iteration 0."""
    return _signs_magnitudes(start, start.state_k, start.state_0)


def signs_k_magnitudes_k(start: BranchStart) -> tuple[State, Mask]:
    """Kept weights with the signs and magnitudes at k: the rewound weights, pruned positions zeroed."""
    return _signs_magnitudes(start, start.state_k, start.state_k)


def random_magnitudes(start: BranchStart) -> tuple[State, Mask]:
    """Signs at k, magnitudes drawn afresh from the init distribution |N(0, kaiming_std²)|."""
    generator = start.generator()
    weights = {}
    for name in start.mask:
        w = start.state_k[name]
        draw = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        weights[name] = _sign(w) * (draw * kaiming_std(w)).abs()
    return _rewrite(start, weights)


def _shuffle_kept(values: torch.Tensor, keep: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per row of 2-D ``values``, a uniformly random permutation of the kept values among the kept positions.

    Random keys with the pruned positions pushed past every kept key give, per row, the kept
    positions in random order (sources); a stable sort of ``~keep`` gives them in index order
    (targets). Pruned positions map among themselves and are zeroed by the caller."""
    keys = torch.rand(values.shape, generator=generator, dtype=torch.float64).to(values.device)
    keys[~keep] = 2.0
    sources = keys.argsort(dim=1)
    targets = (~keep).to(torch.uint8).argsort(dim=1, stable=True)
    return torch.empty_like(values).scatter_(1, targets, values.gather(1, sources))


def _permute(start: BranchStart, group: str, magnitudes_only: bool) -> tuple[State, Mask]:
    """Shuffle the kept weights at k (or only |w|, keeping each position's sign) within each group."""
    generator = start.generator()
    weights = {n: start.state_k[n] for n in start.mask}
    keeps = {n: start.mask[n].to(w.device) for n, w in weights.items()}
    values = {n: w.abs() if magnitudes_only else w for n, w in weights.items()}
    if group == "network":
        flat = torch.cat([v.flatten() for v in values.values()])[None]
        keep = torch.cat([k.flatten() for k in keeps.values()])[None]
        pieces = _shuffle_kept(flat, keep, generator)[0].split([w.numel() for w in weights.values()])
        shuffled = {n: p.view(weights[n].shape) for n, p in zip(weights, pieces)}
    else:
        shuffled = {}
        for name, v in values.items():
            rows = 1 if group == "layer" else v.shape[0]
            out = _shuffle_kept(v.reshape(rows, -1), keeps[name].reshape(rows, -1), generator)
            shuffled[name] = out.view(v.shape)
    if magnitudes_only:
        shuffled = {n: _sign(weights[n]) * s for n, s in shuffled.items()}
    return _rewrite(start, shuffled)


def permute_network(start: BranchStart) -> tuple[State, Mask]:
    """Shuffle the kept weights at k across the whole network (kept positions unchanged)."""
    return _permute(start, "network", magnitudes_only=False)


def permute_layer(start: BranchStart) -> tuple[State, Mask]:
    """Shuffle the kept weights at k within each layer."""
    return _permute(start, "layer", magnitudes_only=False)


def permute_filter(start: BranchStart) -> tuple[State, Mask]:
    """Shuffle the kept weights at k within each output filter/neuron (each slice weight[i])."""
    return _permute(start, "filter", magnitudes_only=False)


def permute_network_magnitudes(start: BranchStart) -> tuple[State, Mask]:
    """Shuffle the kept |w| at k across the whole network; each position keeps its sign at k."""
    return _permute(start, "network", magnitudes_only=True)


def permute_layer_magnitudes(start: BranchStart) -> tuple[State, Mask]:
    """Shuffle the kept |w| at k within each layer; each position keeps its sign at k."""
    return _permute(start, "layer", magnitudes_only=True)


def permute_filter_magnitudes(start: BranchStart) -> tuple[State, Mask]:
    """Shuffle the kept |w| at k within each output filter/neuron; each position keeps its sign at k."""
    return _permute(start, "filter", magnitudes_only=True)


def add_noise(start: BranchStart, alpha: float) -> tuple[State, Mask]:
    """Add N(0, (alpha × kaiming_std(layer))²) to every kept weight at k; pruned positions stay 0."""
    generator = start.generator()
    weights = {}
    for name in start.mask:
        w = start.state_k[name]
        draw = torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device)
        weights[name] = w + draw * (alpha * kaiming_std(w))
    return _rewrite(start, weights)


def noise(alpha: float) -> Intervention:
    """Gaussian noise of std alpha × the layer's Kaiming init std added to each kept weight at k.

    The paper's exact noise convention is unverified (docs/experiments.md, A3); scaling by each
    layer's initialisation std is this reproduction's default."""

    def intervention(start: BranchStart) -> tuple[State, Mask]:
        return add_noise(start, alpha)

    intervention.__name__ = intervention.__qualname__ = f"noise_{alpha:g}"
    intervention.__doc__ = f"Gaussian noise, alpha = {alpha:g}."
    return intervention


INTERVENTIONS: dict[str, Intervention] = {
    "none": none,
    "random_prune": random_prune_per_layer,
    "random_prune_global": random_prune_global,
    "random_reinit": random_reinit,
    "random_magnitudes": random_magnitudes,
    "signs_0_magnitudes_0": signs_0_magnitudes_0,
    "signs_0_magnitudes_k": signs_0_magnitudes_k,
    "signs_k_magnitudes_0": signs_k_magnitudes_0,
    "signs_k_magnitudes_k": signs_k_magnitudes_k,
    "permute_network": permute_network,
    "permute_layer": permute_layer,
    "permute_filter": permute_filter,
    "permute_network_magnitudes": permute_network_magnitudes,
    "permute_layer_magnitudes": permute_layer_magnitudes,
    "permute_filter_magnitudes": permute_filter_magnitudes,
}
BASELINES = ("random_prune", "random_reinit")  # Figure 1's baselines: run at every level by default
RANDOM_BASELINES = ("random_prune", "random_prune_global", "random_reinit")  # drawn as baselines
NOISE_FORM = "noise_<alpha>"
_NOISE = re.compile(r"noise_((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def get_intervention(name: str) -> Intervention:
    """The intervention called ``name``: a registered one, or ``noise_<alpha>`` with alpha > 0."""
    if name in INTERVENTIONS:
        return INTERVENTIONS[name]
    match = _NOISE.fullmatch(name)
    if match and 0 < float(match.group(1)) < float("inf"):
        return noise(float(match.group(1)))
    if name.startswith("noise_"):
        raise SpecError(
            f"bad intervention {name!r}: write {NOISE_FORM} with alpha a positive number, e.g. noise_0.5"
        )
    raise SpecError(f"unknown intervention {name!r}; choose from {', '.join(INTERVENTIONS)} or {NOISE_FORM}")


def _summary(function: Callable) -> str:
    """A docstring's first paragraph on one line."""
    return " ".join((function.__doc__ or "").split("\n\n")[0].split())


def describe() -> str:
    """One line per intervention (name and summary), the noise form last, for CLI help."""
    rows = [(name, _summary(function)) for name, function in INTERVENTIONS.items()]
    rows.append((NOISE_FORM, _summary(noise)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {summary}" for name, summary in rows)
