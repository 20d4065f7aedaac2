"""Iterative magnitude pruning with rewinding (Frankle et al. 2020, docs/experiments.md A1).

Level 0 is the dense run, which keeps the full state at every rewind iteration k. Level L
prunes ``fraction`` of the surviving weights by their magnitude at the end of level L-1,
rewinds every survivor (and BN parameters, running statistics, counters) to iteration k and
trains from k to the end with the schedule positioned at k and a fresh optimiser. Branches
apply an intervention to a level's subnetwork at k and train it the same way. A run with a
pretraining mode (A4) replaces the dense run's first P iterations; its levels rewind to P.

Data order (``TrainingSpec.data_order``): with ``fresh`` (OpenLTH's default) every level and every
branch draws its own data order, seeded by :func:`run_data_seed` (a fixed function of the data seed,
the level and the intervention, so a seed's results stay bitwise reproducible); with ``replay``
every run sees the dense run's batches. The dense run, a pretrained run (pretraining and its
continuation are one run) and level-0 training use the dense run's order either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from earlyphase.catalog import dataset_info
from earlyphase.data import TrainData
from earlyphase.errors import SpecError
from earlyphase.interventions import BranchStart, get_intervention
from earlyphase.masks import Mask, magnitude_prune
from earlyphase.models import build_model
from earlyphase.pretraining import check_pretraining, pretrain
from earlyphase.specs import RunSpec
from earlyphase.training import State, TrainResult, capture_state, train, training_device

# Random draws of branches (fresh inits, random masks, permutations, noise) use seed + this: the
# same for every level and k of a seed, so e.g. random masks of deeper levels nest in shallower ones
# and baselines at different k differ only by k.
REINIT_SEED_OFFSET = 1_000_000


def check_run(spec: RunSpec) -> None:
    """What a run can only know with its model, checked before launch without loading data: the
    architecture fits the dataset's images, ``layers_to_ignore`` names prunable weights, and the
    pretraining fits the data and the schedule. Builds the model once on the CPU."""
    info = dataset_info(spec.data.dataset)
    model = build_model(spec.model, info.num_classes, spec.data.input_shape, seed=0)
    Mask.dense(model, spec.pruning.layers_to_ignore)
    check_pretraining(spec)


def run_data_seed(data_seed: int, level: int, intervention: str = "none") -> int:
    """The data seed of one run under ``data_order = fresh``: ``data_seed`` itself for the dense run
    (level 0, no intervention), else a hash of (data_seed, level, intervention) in [0, 2³¹). It does
    not depend on k, so the chains of one seed rewound to different k see the same batches at a level."""
    if level == 0 and intervention == "none":
        return data_seed
    digest = hashlib.sha256(f"{data_seed}/{level}/{intervention}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


@dataclass
class LevelRun:
    """One trained (sub)network: its mask, final state, logged curve and summary metrics."""

    level: int
    mask: Mask
    state: State
    curve: list[dict[str, float]]
    metrics: dict[str, float]
    captured: dict[int, State] = field(default_factory=dict)


@dataclass
class DenseRun(LevelRun):
    """Level 0; ``captured`` holds the full state at each rewind iteration (0 always included)."""

    @property
    def rewind_states(self) -> dict[int, State]:
        return self.captured


class IMP:
    """IMP with rewinding for one (spec, seed); call :meth:`dense`, then :meth:`level` per level."""

    def __init__(
        self,
        spec: RunSpec,
        seed: int,
        device: torch.device | str | None = None,
        data_dir: str | None = None,
        data_seed: int | None = None,
    ):
        """``seed`` sets the initialisation; ``data_seed`` the dense run's data order (default: ``seed``)."""
        self.spec = spec
        self.seed = seed
        self.device = training_device(str(device) if device else None)
        self.data = TrainData(spec.data, seed if data_seed is None else data_seed, self.device, data_dir)
        self.total_iterations = spec.total_iterations

    def new_model(self, seed: int | None = None) -> torch.nn.Module:
        info = self.data.info
        model = build_model(
            self.spec.model, info.num_classes, info.shape, self.seed if seed is None else seed
        )
        return model.to(self.device)

    def run_data(self, level: int, intervention: str = "none") -> TrainData:
        """The data (and data order) a run of ``level`` / ``intervention`` trains on: the dense run's
        under ``replay``, its own (:func:`run_data_seed`) under ``fresh``."""
        if self.spec.training.data_order == "replay":
            return self.data
        return self.data.reseeded(run_data_seed(self.data.seed, level, intervention))

    def dense_mask(self, model: torch.nn.Module) -> Mask:
        return Mask.dense(model, self.spec.pruning.layers_to_ignore).to(self.device)

    def dense(
        self,
        rewind_iterations: Iterable[int],
        pretraining_mask: Mask | None = None,
        pretraining_subset: torch.Tensor | None = None,
        **train_options,
    ) -> DenseRun:
        """Train the dense network from its seeded initialisation, keeping the full state at each k.

        With a pretraining mode the first P iterations are :func:`~earlyphase.pretraining.pretrain`
        and the run continues from P on the real task (see :meth:`pretrained_dense`)."""
        if self.spec.pretraining.mode != "none":
            return self.pretrained_dense(
                rewind_iterations, pretraining_mask, pretraining_subset, **train_options
            )
        if pretraining_mask is not None:
            raise SpecError("a pretraining mask needs sparse pretraining")
        rewind_iterations = sorted({0, *rewind_iterations})
        for k in rewind_iterations:
            self.spec.check_rewind(k)
        model = self.new_model()
        mask = self.dense_mask(model)
        result = train(model, self.data, self.spec.training, capture=rewind_iterations, **train_options)
        return DenseRun(**vars(self._level_run(0, mask, result, start=0)))

    def pretrained_dense(
        self,
        rewind_iterations: Iterable[int],
        pretraining_mask: Mask | None = None,
        pretraining_subset: torch.Tensor | None = None,
        **train_options,
    ) -> DenseRun:
        """Pretrain for P iterations, then train P → end on the real data and labels with the
        schedule positioned at P, continuing the pretraining optimiser unless the spec resets it.

        The rewind states are the 10-way network's initial state (0), the state at P (where IMP
        levels of a pretrained run rewind to) and the states at any requested k > P; the final state
        is the mask source. With sparse pretraining ``pretraining_mask`` (the mask of level
        ``sparse_level``) applies throughout and the returned run is that level, not level 0.
        ``pretraining_subset``: the training indices of a scored subset pretraining."""
        length = check_pretraining(self.spec)
        later = sorted({length, *(k for k in rewind_iterations if k != 0)})
        for k in later:
            self.spec.check_rewind(k)
            if k < length:
                raise SpecError(
                    f"rewind iteration {k} lies inside pretraining: rewind to 0 or to k >= P = {length}"
                )
        initial = self.new_model()
        sparse = None if pretraining_mask is None else pretraining_mask.to(self.device)
        pretrained = pretrain(self.spec, self.seed, self.data, sparse, pretraining_subset, **train_options)
        model = self.new_model()
        model.load_state_dict(pretrained.state)
        result = train(
            model,
            self.data,
            self.spec.training,
            start=length,
            mask=sparse,
            capture=later,
            optimizer_state=pretrained.optimizer_state,
            **train_options,
        )
        result.captured[0] = capture_state(initial)
        result.curve = pretrained.curve + result.curve
        result.wall_time_s += pretrained.wall_time_s
        mask = self.dense_mask(initial) if sparse is None else sparse
        run = self._level_run(self.spec.pretraining.sparse_level, mask, result, start=length)
        return DenseRun(**vars(run))

    def replay(self, iteration: int) -> State:
        """The dense run's full state after ``iteration`` steps, trained again from its seeded
        initialisation: on the CPU bitwise the state :meth:`dense` keeps there. For a rewind point
        chosen after the dense run (a search over k), at the cost of ``iteration`` steps."""
        if self.spec.pretraining.mode != "none":
            raise SpecError("replaying the dense run is for runs without pretraining")
        self.spec.check_rewind(iteration)
        return train(self.new_model(), self.data, self.spec.training, end=iteration).state

    def prune(self, state: State, mask: Mask) -> Mask:
        """The next level's mask: global magnitude pruning of ``state``'s surviving weights."""
        return magnitude_prune(state, mask, self.spec.pruning.fraction)

    def level(
        self,
        level: int,
        rewind_iteration: int,
        rewind_state: State,
        previous: LevelRun,
        **train_options,
    ) -> LevelRun:
        """Prune ``previous`` by final magnitude, rewind to ``rewind_state`` (iteration k), train k → end."""
        mask = self.prune(previous.state, previous.mask)
        return self.train_subnetwork(level, rewind_iteration, rewind_state, mask, **train_options)

    def branch(
        self,
        intervention: str,
        level: int,
        rewind_iteration: int,
        rewind_states: dict[int, State],
        mask: Mask,
        **train_options,
    ) -> LevelRun:
        """Apply ``intervention`` to the level's subnetwork at k, then train it from k like IMP.

        ``rewind_states`` holds the dense run's full states at k and at 0."""
        seed = self.seed + REINIT_SEED_OFFSET
        start = BranchStart(
            state_k=rewind_states[rewind_iteration],
            state_0=rewind_states[0],
            mask=mask,
            fresh_state=lambda: capture_state(self.new_model(seed)),
            seed=seed,
        )
        state, branch_mask = get_intervention(intervention)(start)
        return self.train_subnetwork(
            level, rewind_iteration, state, branch_mask, intervention=intervention, **train_options
        )

    def train_subnetwork(
        self,
        level: int,
        start_iteration: int,
        start_state: State,
        mask: Mask,
        intervention: str = "none",
        **train_options,
    ) -> LevelRun:
        """Load ``start_state``, zero the pruned weights, train from ``start_iteration`` to the end on
        the data of (``level``, ``intervention``) (:meth:`run_data`).

        ``train_options`` go to :func:`earlyphase.training.train` (``capture``, ``log_every``, ``on_log``).
        """
        self.spec.check_rewind(start_iteration)
        model = self.new_model()
        model.load_state_dict(start_state)
        mask = mask.to(self.device)
        result = train(
            model,
            self.run_data(level, intervention),
            self.spec.training,
            start=start_iteration,
            mask=mask,
            **train_options,
        )
        return self._level_run(level, mask, result, start=start_iteration)

    def run(self, rewind_iteration: int, levels: int) -> Iterator[LevelRun]:
        """The whole chain without Ray: the dense run, then levels 1..``levels``."""
        dense = self.dense([rewind_iteration])
        yield dense
        previous: LevelRun = dense
        for level in range(1, levels + 1):
            previous = self.level(level, rewind_iteration, dense.rewind_states[rewind_iteration], previous)
            yield previous

    def _level_run(self, level: int, mask: Mask, result: TrainResult, start: int) -> LevelRun:
        final = result.final
        metrics = {
            "level": level,
            "density": mask.density,
            "sparsity": mask.sparsity,
            "test_accuracy": final["test_accuracy"],
            "test_loss": final["test_loss"],
            "train_loss": final.get("train_loss", float("nan")),
            "iterations": self.total_iterations - start,
            "wall_time_s": result.wall_time_s,
            **{name: final[name] for name in ("validation_accuracy", "validation_loss") if name in final},
        }
        return LevelRun(level, mask, result.state, result.curve, metrics, result.captured)
