"""Frozen dataclass specs: what a run is, as canonical JSON with a content hash as its key.

Steps are written like OpenLTH: ``"160ep"``, ``"500it"``, ``"2ep100it"``; they resolve to
iterations once the dataset's iterations per epoch are known (:func:`parse_step`). Every field
carries a one-line help (and optionally its command-line flag) in its metadata: the command
line of every entry point is generated from these classes (:mod:`earlyphase.commandline`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from earlyphase.catalog import dataset_info, parse_model_name
from earlyphase.errors import SpecError

_STEP_RE = re.compile(r"^\s*(?:(\d+)\s*ep)?\s*(?:(\d+)\s*it)?\s*$")


def option(default: Any = dataclasses.MISSING, help: str = "", flag: str | None = None, **kwargs: Any):
    """A spec field with its one-line ``help`` and, if not the field's name, its ``flag``."""
    metadata = {"help": help, **({"flag": flag} if flag else {})}
    return field(default=default, metadata=metadata, **kwargs)


def parse_step(step: str | int, iterations_per_epoch: int) -> int:
    """``"2ep100it"`` → 2 * iterations_per_epoch + 100; an int or a bare number is iterations."""
    if isinstance(step, str) and step.strip().isdigit():
        step = int(step)
    if isinstance(step, int):
        if step < 0:
            raise SpecError(f"step {step} is negative")
        return step
    match = _STEP_RE.match(str(step))
    if not match or (match.group(1) is None and match.group(2) is None):
        raise SpecError(f"bad step {step!r}: write it like '160ep', '500it' or '2ep100it'")
    epochs, iterations = (int(g) if g else 0 for g in match.groups())
    return epochs * iterations_per_epoch + iterations


def format_step(iterations: int, iterations_per_epoch: int) -> str:
    """The inverse of :func:`parse_step`: 7820 at 391 per epoch → ``"20ep"``, 900 → ``"2ep118it"``."""
    epochs, rest = divmod(iterations, iterations_per_epoch)
    if not epochs:
        return f"{rest}it"
    return f"{epochs}ep" + (f"{rest}it" if rest else "")


class Spec:
    """Mixin: canonical JSON, content hash, validation hook."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SpecError` for values no run could use."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    def key(self) -> str:
        """Content hash of the canonical JSON: the artifact key of what this spec produces."""
        return content_key(self.to_dict())

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(names)
        if unknown:
            raise SpecError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in values.items():
            nested = [t for t in (hints[name], *typing.get_args(hints[name])) if _is_spec(t)]
            if isinstance(value, dict) and nested:
                value = nested[0].from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _is_spec(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Spec)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def content_key(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """A field value as plain data; nested specs through their own (canonical) ``to_dict``."""
    if isinstance(value, Spec):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    return value


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


@dataclass(frozen=True)
class DataSpec(Spec):
    """Which dataset, how it is batched and augmented. Where it lives is not part of the key."""

    dataset: str = option(help="cifar10, fashion_mnist, mnist or synthetic")
    batch_size: int = option(128, "examples per SGD step")
    augment: bool | None = option(
        None, "random flip + 4-px pad-crop (default: the dataset's own, CIFAR-10 only)"
    )
    validation_examples: int = option(
        0, "training examples held out for validation: class-balanced, the same for every seed (0: none)"
    )
    image_size: int = option(
        0, "image side after average-pooling each image by an integer factor at load (0: native)"
    )
    train_subset: int = option(
        0, "train on a fixed class-balanced subset of this many examples, the same for every seed (0: all)"
    )

    def validate(self) -> None:
        info = dataset_info(self.dataset)
        if self.batch_size < 1:
            raise SpecError(f"batch_size must be positive, got {self.batch_size}")
        held_out = self.validation_examples
        if not 0 <= held_out < info.train_size or held_out % info.num_classes:
            raise SpecError(
                f"validation_examples must be a multiple of {info.num_classes} classes in "
                f"[0, {info.train_size}) for {self.dataset}, got {held_out}"
            )
        _, height, width = info.shape
        side = self.image_size
        if side < 0 or (side and (height % side or width % side)):
            raise SpecError(
                f"image_size must divide {self.dataset}'s {height}×{width} images (or be 0), got {side}"
            )
        available = info.train_size - held_out
        if not 0 <= self.train_subset <= available or self.train_subset % info.num_classes:
            raise SpecError(
                f"train_subset must be a multiple of {info.num_classes} classes in [0, {available}] for "
                f"{self.dataset}, got {self.train_subset}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Without the derivative fields (validation split, pooling, subset) when 0, so a run on the
        plain dataset keys as before they existed."""
        values = super().to_dict()
        for name in ("validation_examples", "image_size", "train_subset"):
            if not values[name]:
                del values[name]
        return values

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images a model sees: the dataset's, or pooled to ``image_size``."""
        channels, height, width = dataset_info(self.dataset).shape
        side = self.image_size
        return (channels, side, side) if side else (channels, height, width)

    @property
    def train_examples(self) -> int:
        """The examples trained on: the subset, else the training set less the validation split."""
        return self.train_subset or dataset_info(self.dataset).train_size - self.validation_examples

    @property
    def iterations_per_epoch(self) -> int:
        return -(-self.train_examples // self.batch_size)


@dataclass(frozen=True)
class ModelSpec(Spec):
    """A named architecture (``resnet20``, ``vgg16``, ``lenet_300_100``...) and its width."""

    name: str = option(help="resnet20, resnet56, vgg16, lenet_300_100, mlp_300_300, conv4...", flag="model")
    width: int = option(1, "width multiplier: ResNet filters 16W/32W/64W; VGG, MLP, Conv: every layer")

    def validate(self) -> None:
        parse_model_name(self.name)
        if self.width < 1:
            raise SpecError(f"model width must be >= 1, got {self.width}")


DATA_ORDERS = ("fresh", "replay")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainingSpec(Spec):
    """SGD with momentum, weight decay, linear warmup and step milestones; the data order of the runs
    built on the dense run and the arithmetic precision (docs/experiments.md A0, A1)."""

    steps: str = option("160ep", "training length: 160ep, 3000it, 2ep100it")
    lr: float = option(0.1, "learning rate")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(1e-4, "L2 weight decay")
    milestones: tuple[str, ...] = option(("80ep", "120ep"), "steps where the lr is multiplied by gamma")
    gamma: float = option(0.1, "lr factor at each milestone")
    warmup: str = option("0it", "linear lr warmup length")
    eval_every: str = option("1ep", "test-set evaluation interval")
    data_order: str = option(
        "fresh", "fresh: every level and branch draws its own data order (OpenLTH); replay: the dense run's"
    )
    precision: str = option("fp32", "fp32 (the papers), or bf16: bf16 autocast on CUDA (CPU: always fp32)")

    def validate(self) -> None:
        for name, allowed in (("data_order", DATA_ORDERS), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise SpecError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        for step in (self.steps, self.warmup, self.eval_every, *self.milestones):
            parse_step(step, 1)
        if parse_step(self.steps, 1) == 0:
            raise SpecError("training must run for at least one iteration")
        if parse_step(self.eval_every, 1) == 0:
            raise SpecError("eval_every must be at least one iteration")
        if not self.gamma > 0:
            raise SpecError(f"gamma (the lr factor at each milestone) must be positive, got {self.gamma}")
        if self.lr <= 0:
            raise SpecError(f"learning rate must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise SpecError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise SpecError(f"weight decay must be >= 0, got {self.weight_decay}")

    def total_iterations(self, iterations_per_epoch: int) -> int:
        return parse_step(self.steps, iterations_per_epoch)

    def lr_at(self, iteration: int, iterations_per_epoch: int) -> float:
        """The learning rate used by the step that starts at ``iteration``."""
        return self.lr_schedule(iterations_per_epoch)(iteration)

    def lr_schedule(self, iterations_per_epoch: int) -> Callable[[int], float]:
        """``lr_at`` with the steps resolved once: iteration → learning rate."""
        warmup = parse_step(self.warmup, iterations_per_epoch)
        milestones = [parse_step(m, iterations_per_epoch) for m in self.milestones]

        def lr_at(iteration: int) -> float:
            lr = self.lr * min(1.0, (iteration + 1) / warmup) if warmup else self.lr
            return lr * self.gamma ** sum(iteration >= m for m in milestones)

        return lr_at


@dataclass(frozen=True)
class PruningSpec(Spec):
    """Global unstructured magnitude pruning of conv/linear weights, ``fraction`` per level."""

    fraction: float = option(
        0.2, "fraction of the surviving weights pruned per level", flag="pruning-fraction"
    )
    layers_to_ignore: tuple[str, ...] = option((), "prunable weights never pruned, e.g. fc.weight")

    def validate(self) -> None:
        if not 0 < self.fraction < 1:
            raise SpecError(f"pruning fraction must lie in (0, 1), got {self.fraction}")


PRETRAINING_MODES = ("none", "supervised", "random_labels", "rotation", "blur", "subset")
_MODE_PARAMETERS = {"random_labels": "label_fraction", "blur": "blur_factor", "subset": "subset_size"}
SCORES = ("el2n", "grand", "forgetting")
# How a subset is chosen (docs/experiments.md B): random class-balanced, the easiest or hardest by an
# example score, or the lowest per-example linear-mode-connectivity barrier (the last three need scores).
SUBSET_KINDS = ("random", "easy", "hard", "lmc")
_SUBSET_NAME_RE = re.compile(r"^subset_(?:(random|lmc)_|(easy|hard)_([a-z0-9]+)_)?(\d+)(?:_o(\d+))?$")
_SPARSE_NAME_RE = re.compile(r"^sparse_L([1-9]\d*)(?:_k(\d+))?_")
_RESET_SUFFIX = "_reset_optimizer"


@dataclass(frozen=True)
class PretrainingSpec(Spec):
    """What replaces the first P iterations of training (docs/experiments.md A4); ``none``: nothing.

    The canonical dict (hence the run's key) holds only the fields the mode uses, so ``none`` keys
    as before pretraining existed and e.g. a rotation run does not depend on ``blur_factor``.
    """

    mode: str = option("none", f"pretraining mode: {', '.join(PRETRAINING_MODES)}", flag="pretraining-mode")
    iterations: str = option(
        "0it", "pretraining length P, e.g. 500it or 2ep (0 for none)", flag="pretraining-iterations"
    )
    label_fraction: float = option(
        1.0, "random_labels: fraction of training labels replaced", flag="pretraining-label-fraction"
    )
    blur_factor: int = option(
        4, "blur: down-sampling factor b (bilinear down and up)", flag="pretraining-blur-factor"
    )
    subset_size: int = option(  # a multiple of 10 classes
        1000, "subset: class-balanced training examples used", flag="pretraining-subset-size"
    )
    subset_kind: str = option(
        "random", f"subset: how it is chosen, {', '.join(SUBSET_KINDS)}", flag="pretraining-subset-kind"
    )
    subset_score: str = option(
        "el2n", f"subset easy/hard: the example score, {', '.join(SCORES)}", flag="pretraining-subset-score"
    )
    subset_offset: int = option(
        0, "subset easy/hard/lmc: examples skipped from that end first", flag="pretraining-subset-offset"
    )
    sparse_level: int = option(
        0, "pretrain the IMP subnetwork of this level (0: dense)", flag="pretraining-sparse-level"
    )
    sparse_rewind_iteration: int = option(
        0,
        "sparse pretraining: the rewind iteration of the chain whose mask is used",
        flag="pretraining-sparse-rewind-iteration",
    )
    reset_optimizer: bool = option(
        False,
        "a fresh SGD optimiser after pretraining (default: momentum carried over)",
        flag="pretraining-reset-optimizer",
    )

    def validate(self) -> None:
        if self.mode not in PRETRAINING_MODES:
            raise SpecError(
                f"unknown pretraining mode {self.mode!r}; choose one of {', '.join(PRETRAINING_MODES)}"
            )
        length = parse_step(self.iterations, 1)  # 0 for any dataset iff no epochs and no iterations
        if self.mode == "none" and length:
            raise SpecError(f"pretraining mode none takes no pretraining iterations, got {self.iterations!r}")
        if self.mode != "none" and not length:
            raise SpecError(f"pretraining mode {self.mode} needs pretraining iterations > 0")
        if not 0 <= self.label_fraction <= 1:
            raise SpecError(f"random-label fraction must lie in [0, 1], got {self.label_fraction}")
        if self.blur_factor < 1:
            raise SpecError(f"blur factor must be >= 1, got {self.blur_factor}")
        if self.subset_size < 1:
            raise SpecError(f"subset size must be >= 1, got {self.subset_size}")
        if self.subset_kind not in SUBSET_KINDS:
            raise SpecError(
                f"unknown subset kind {self.subset_kind!r}; choose one of {', '.join(SUBSET_KINDS)}"
            )
        if self.subset_score not in SCORES:
            raise SpecError(f"unknown score {self.subset_score!r}; choose one of {', '.join(SCORES)}")
        if self.subset_offset < 0 or (self.subset_offset and self.subset_kind == "random"):
            raise SpecError(
                f"a subset offset must be >= 0 and needs a scored subset, got {self.subset_offset}"
            )
        if self.sparse_level < 0 or self.sparse_rewind_iteration < 0:
            raise SpecError(
                f"sparse pretraining level and rewind iteration must be >= 0, "
                f"got {self.sparse_level} and {self.sparse_rewind_iteration}"
            )
        if self.mode == "none" and self.sparse_level:
            raise SpecError("sparse pretraining needs a pretraining mode other than none")
        if self.mode == "none" and self.reset_optimizer:
            raise SpecError("resetting the optimiser after pretraining needs a mode other than none")

    def to_dict(self) -> dict[str, Any]:
        if self.mode == "none":
            return {"mode": "none"}
        names = ["mode", "iterations", "reset_optimizer"]
        names += [_MODE_PARAMETERS[self.mode]] if self.mode in _MODE_PARAMETERS else []
        if self.scored_subset:  # a random subset keys as before subset kinds existed
            names += ["subset_kind", "subset_offset"] + (
                ["subset_score"] if self.subset_kind != "lmc" else []
            )
        names += ["sparse_level", "sparse_rewind_iteration"] if self.sparse_level else []
        return {name: getattr(self, name) for name in names}

    @property
    def scored_subset(self) -> bool:
        """A subset chosen by example scores or barriers (easy, hard, lmc): it needs the scores stage."""
        return self.mode == "subset" and self.subset_kind != "random"

    @property
    def name(self) -> str:
        """The canonical name in results: ``none``, ``random_labels_1.0``, ``blur_4``, ``subset_random_1000``,
        ``subset_easy_el2n_1000``, ``subset_lmc_1000`` (``_o500`` appended for an offset),
        with sparse pretraining ``sparse_L3_rotation`` (chain k = 0) or ``sparse_L3_k500_rotation``,
        and ``_reset_optimizer`` appended when the optimiser restarts after pretraining."""
        name = self.mode
        if self.mode == "subset":
            score = f"_{self.subset_score}" if self.subset_kind in ("easy", "hard") else ""
            offset = f"_o{self.subset_offset}" if self.subset_offset else ""
            name += f"_{self.subset_kind}{score}_{self.subset_size}{offset}"
        elif self.mode in _MODE_PARAMETERS:
            name += f"_{getattr(self, _MODE_PARAMETERS[self.mode])}"
        if self.sparse_level:
            chain = f"_k{self.sparse_rewind_iteration}" if self.sparse_rewind_iteration else ""
            name = f"sparse_L{self.sparse_level}{chain}_{name}"
        return name + (_RESET_SUFFIX if self.reset_optimizer else "")

    @classmethod
    def from_name(cls, name: str, iterations: str = "0it") -> PretrainingSpec:
        """The spec a canonical :attr:`name` denotes, pretraining for ``iterations``; a mode without
        its parameter (``blur``, ``random_labels``, ``subset``) takes the parameter's default;
        ``subset_1000`` is ``subset_random_1000``."""
        reset = name.endswith(_RESET_SUFFIX)
        text = name.removesuffix(_RESET_SUFFIX)
        sparse = _SPARSE_NAME_RE.match(text)
        fields: dict[str, Any] = {"reset_optimizer": reset}
        if sparse:
            fields["sparse_level"] = int(sparse.group(1))
            fields["sparse_rewind_iteration"] = int(sparse.group(2) or 0)
            text = text[sparse.end() :]
        subset = _SUBSET_NAME_RE.match(text)
        if subset:
            kind, scored, score, size, offset = subset.groups()
            fields.update(subset_kind=kind or scored or "random", subset_size=int(size))
            fields.update(subset_offset=int(offset or 0), **({"subset_score": score} if score else {}))
            return cls(mode="subset", iterations=iterations, **fields)
        mode = next((m for m in PRETRAINING_MODES if text == m or text.startswith(f"{m}_")), None)
        parameter = _MODE_PARAMETERS.get(mode)
        if mode is None or (text != mode and parameter is None):
            raise SpecError(
                f"unknown pretraining {name!r}; write one of {', '.join(PRETRAINING_MODES)}, with a "
                "parameter and prefix where wanted: random_labels_0.5, blur_2, sparse_L3_rotation"
            )
        if text != mode:
            value = text[len(mode) + 1 :]
            kind = float if parameter == "label_fraction" else int
            try:
                fields[parameter] = kind(value)
            except ValueError:
                message = f"pretraining {name!r}: {parameter} must be a number, not {value!r}"
                raise SpecError(message) from None
        return cls(mode=mode, iterations="0it" if mode == "none" else iterations, **fields)


@dataclass(frozen=True)
class RunSpec(Spec):
    """Everything that determines a dense run and the IMP levels built on it (not the seed)."""

    data: DataSpec
    model: ModelSpec
    training: TrainingSpec = field(default_factory=TrainingSpec)
    pruning: PruningSpec = field(default_factory=PruningSpec)
    pretraining: PretrainingSpec = field(default_factory=PretrainingSpec)

    def validate(self) -> None:
        end = self.total_iterations
        late = [m for m in self.training.milestones if self.iterations(m) >= end]
        if late:
            raise SpecError(
                f"lr milestone(s) {', '.join(late)} at or beyond the end of training "
                f"({self.training.steps} = {end} iterations): the lr would never drop there"
            )

    @property
    def total_iterations(self) -> int:
        return self.training.total_iterations(self.data.iterations_per_epoch)

    def iterations(self, step: str | int) -> int:
        """A step string resolved against this run's dataset and batch size."""
        return parse_step(step, self.data.iterations_per_epoch)

    def scaled_milestones(self, base: RunSpec) -> tuple[str, ...]:
        """``base``'s lr milestones at the same fractions of this run's length (rounded to the nearest
        iteration, written for this run's epoch): ``80ep, 120ep`` of 160ep become ``20ep, 30ep`` at 40ep."""
        base_end, end = base.total_iterations, self.total_iterations
        iterations = [round(base.iterations(m) * end / base_end) for m in base.training.milestones]
        return tuple(format_step(m, self.data.iterations_per_epoch) for m in iterations)

    def check_rewind(self, rewind_iteration: int) -> None:
        if not 0 <= rewind_iteration < self.total_iterations:
            raise SpecError(
                f"rewind iteration {rewind_iteration} is outside training "
                f"(0..{self.total_iterations - 1} for {self.training.steps})"
            )


@dataclass(frozen=True)
class TelemetrySpec(Spec):
    """Early-phase telemetry of the dense run (docs/experiments.md, A2), optionally split into the
    weights IMP keeps and prunes at ``split_level`` of the chain rewound to ``split_rewind_iteration``."""

    end: str = option("4000it", "last iteration observed", flag="telemetry-end")
    every_until: int = option(100, "observe every iteration up to here", flag="telemetry-every-until")
    points: int = option(60, "log-spaced observations after that", flag="telemetry-points")
    tracked: int = option(10, "randomly chosen weights whose values are tracked", flag="telemetry-tracked")
    train_eval_examples: int = option(10_000, "training examples evaluated", flag="telemetry-train-examples")
    split_level: int = option(0, "split weights into kept/pruned by this IMP level's mask (0: no split)")
    split_rewind_iteration: int = option(0, "the rewind iteration of the chain that gives the split mask")

    def validate(self) -> None:
        parse_step(self.end, 1)
        if self.every_until < 0 or self.points < 0 or self.tracked < 0 or self.train_eval_examples < 1:
            raise SpecError(
                "telemetry every_until, points, tracked must be >= 0 and train_eval_examples >= 1"
            )
        if self.split_level < 0:
            raise SpecError(f"telemetry split level must be >= 0, got {self.split_level}")


@dataclass(frozen=True)
class ScoreSpec(Spec):
    """Example difficulty scores (docs/experiments.md B): K independently seeded networks, each an
    ordinary dense run of the RunSpec stopped after ``score_steps`` and scored there, averaged."""

    score_networks: int = option(4, "K: independently seeded score networks averaged (lth_diet: 16)")
    score_steps: str = option(
        "2ep", "training of each score network before scoring (lth_diet: 7800 it, ~20ep)"
    )
    scores: tuple[str, ...] = option(SCORES, f"scores to compute, of {', '.join(SCORES)}")
    forgetting_every: str = option(
        "1ep", "how often the whole train set's correctness is recorded for forgetting"
    )

    def validate(self) -> None:
        if self.score_networks < 1:
            raise SpecError(f"score_networks must be >= 1, got {self.score_networks}")
        if not self.scores:
            raise SpecError("scores is empty; choose some of " + ", ".join(SCORES))
        unknown = [s for s in self.scores if s not in SCORES]
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise SpecError(f"unknown score(s) {names}; choose from {', '.join(SCORES)}")
        if len(set(self.scores)) != len(self.scores):
            raise SpecError(f"scores {self.scores} name a score twice")
        for name in ("score_steps", "forgetting_every"):
            if parse_step(getattr(self, name), 1) == 0:
                raise SpecError(f"{name} must be at least one iteration, got {getattr(self, name)!r}")


DYNAMICS_ARCHITECTURES = ("two_layer", "deep", "cnn")
DYNAMICS_ACTIVATIONS = ("relu", "tanh", "erf", "softplus")
DYNAMICS_TRAINED_LAYERS = ("first", "second", "both")
DYNAMICS_TASKS = ("gaussian", "fashion_mnist", "cifar10")
DYNAMICS_LABELLINGS = ("linear", "quadratic", "mixed")
# Two classes per image task when ``classes`` is empty: T-shirt/top vs shirt (Fashion-MNIST, a pair a
# linear model cannot separate well, like the paper's pair) and the paper's cats vs horses (CIFAR-10).
DYNAMICS_DEFAULT_CLASSES = {"fashion_mnist": (0, 6), "cifar10": (3, 7)}
# Learning rate when ``dynamics_lr`` is unset. On the image tasks the linear model's top curvature
# λ_max(ΨᵀΨ/n) is ~24x the Gaussian task's (0.089 vs 0.0037, first layer, Fashion-MNIST 0 vs 6): lr 4
# moves the top mode 36 % in the first step, lr 0.5 4.5 %, so the early phase shows on the step axis.
DYNAMICS_DEFAULT_LR = {"gaussian": 4.0, "fashion_mnist": 0.5, "cifar10": 0.5}


@dataclass(frozen=True)
class DynamicsSpec(Spec):
    """Early-time linear dynamics (Hu et al. 2020): a network and its linear model under full-batch GD."""

    architecture: str = option("two_layer", "two_layer, deep (fully connected) or cnn (patches + pooling)")
    depth: int = option(3, "hidden layers of deep and cnn (two_layer has one)")
    hidden_width: int = option(256, "hidden units (channels) per layer, m")
    activation: str = option("relu", "relu, tanh, erf or softplus")
    patch_size: int = option(4, "cnn: side of the square patches of the first layer")
    patch_stride: int = option(4, "cnn: stride between patches")
    trained_layers: str = option("first", "first (input layer), second (output layer) or both (all layers)")
    dynamics_lr: float | None = option(
        None, "gradient-descent learning rate, both models (default: 4 on gaussian, 0.5 on images)"
    )
    gd_steps: int = option(2000, "full-batch gradient-descent steps")
    log_points: int = option(25, "measurements on a log-spaced grid of steps")
    center_output: bool = option(True, "train f - f_0 so the network starts at 0 like the linear model")
    task: str = option("gaussian", "gaussian, fashion_mnist or cifar10")
    classes: tuple[int, ...] = option((), "two labels (-1, +1) of an image task; empty: 0 vs 6 / 3 vs 7")
    input_dim: int = option(100, "gaussian: input dimension d")
    labelling: str = option("mixed", "gaussian labels: linear sign(z1), quadratic sign(z2 z3), mixed")
    train_examples: int = option(2000, "training examples (paper: 20000)")
    test_examples: int = option(500, "test examples (paper: 2000)")

    def validate(self) -> None:
        choices = {
            "architecture": DYNAMICS_ARCHITECTURES,
            "activation": DYNAMICS_ACTIVATIONS,
            "trained_layers": DYNAMICS_TRAINED_LAYERS,
            "task": DYNAMICS_TASKS,
            "labelling": DYNAMICS_LABELLINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise SpecError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        for name in ("depth", "hidden_width", "patch_size", "patch_stride", "gd_steps", "input_dim"):
            if getattr(self, name) < 1:
                raise SpecError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("train_examples", "test_examples"):
            if getattr(self, name) < 2:
                raise SpecError(f"{name} must be at least 2, got {getattr(self, name)}")
        if self.dynamics_lr is not None and not self.dynamics_lr > 0:
            raise SpecError(f"dynamics_lr must be positive, got {self.dynamics_lr}")
        if self.log_points < 2:
            raise SpecError(f"log_points must be at least 2, got {self.log_points}")
        if self.classes and (
            len(self.classes) != 2
            or self.classes[0] == self.classes[1]
            or not all(isinstance(c, int) and 0 <= c < 10 for c in self.classes)
        ):
            raise SpecError(f"classes must be two distinct labels in 0..9, got {list(self.classes)}")
        if self.task != "gaussian":  # both datasets' classes are balanced
            info = dataset_info(self.task)
            train, test = (2 * size // info.num_classes for size in (info.train_size, info.test_size))
            if self.train_examples > train or self.test_examples > test:
                raise SpecError(
                    f"{self.task} has {train} train and {test} test images of two classes, "
                    f"not {self.train_examples} and {self.test_examples}"
                )
        if (
            self.architecture == "cnn"
            and self.task == "gaussian"
            and round(self.input_dim**0.5) ** 2 != self.input_dim
        ):
            raise SpecError(f"a cnn on gaussian inputs needs a square input_dim, got {self.input_dim}")

    @property
    def lr(self) -> float:
        """``dynamics_lr``, else the task's default (``DYNAMICS_DEFAULT_LR``)."""
        return DYNAMICS_DEFAULT_LR[self.task] if self.dynamics_lr is None else self.dynamics_lr

    @property
    def hidden_layers(self) -> int:
        """1 for two_layer, ``depth`` otherwise."""
        return 1 if self.architecture == "two_layer" else self.depth

    @property
    def class_pair(self) -> tuple[int, int]:
        """The image task's (negative, positive) labels."""
        return tuple(self.classes) if self.classes else DYNAMICS_DEFAULT_CLASSES.get(self.task, (0, 1))
