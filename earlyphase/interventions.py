"""Interventions: what a branch trial does to the IMP subnetwork before training it from k.

Each intervention is a named function of a :class:`BranchStart` (the full state at rewind
iteration k, the state at iteration 0, the level's mask, a fresh initialisation and a seeded
generator) returning the state and mask to train. Non-prunable state (BatchNorm, biases,
running statistics) stays at its iteration-k value unless the intervention says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from earlyphase.errors import SpecError
from earlyphase.masks import Mask, random_prune

State = dict[str, torch.Tensor]


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


def none(start: BranchStart) -> tuple[State, Mask]:
    """IMP itself: the subnetwork rewound to k."""
    return dict(start.state_k), start.mask


def random_prune_global(start: BranchStart) -> tuple[State, Mask]:
    """Random pruning baseline: a uniformly random mask with the same number of kept weights
    (over all prunable layers at once), weights rewound to k."""
    return dict(start.state_k), random_prune(start.mask, start.seed)


def random_reinit(start: BranchStart) -> tuple[State, Mask]:
    """Random re-initialisation baseline: the same mask on a freshly initialised network (every
    parameter and buffer from a new draw of the paper's initialisers), trained from k."""
    return start.fresh_state(), start.mask


INTERVENTIONS: dict[str, Intervention] = {
    "none": none,
    "random_prune": random_prune_global,
    "random_reinit": random_reinit,
}
BASELINES = ("random_prune", "random_reinit")


def get_intervention(name: str) -> Intervention:
    try:
        return INTERVENTIONS[name]
    except KeyError:
        raise SpecError(f"unknown intervention {name!r}; choose from {', '.join(INTERVENTIONS)}") from None
