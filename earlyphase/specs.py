"""Frozen dataclass specs: what a run is, as canonical JSON with a content hash as its key.

Steps are written like OpenLTH: ``"160ep"``, ``"500it"``, ``"2ep100it"``; they resolve to
iterations once the dataset's iterations per epoch are known (:func:`parse_step`).
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

from earlyphase.errors import SpecError

_STEP_RE = re.compile(r"^\s*(?:(\d+)\s*ep)?\s*(?:(\d+)\s*it)?\s*$")


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


class Spec:
    """Mixin: canonical JSON, content hash, validation hook."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`SpecError` for values no run could use."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
            nested = hints[name]
            if isinstance(value, dict) and isinstance(nested, type) and issubclass(nested, Spec):
                value = nested.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def content_key(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


TRAIN_SIZES = {"cifar10": 50_000, "fashion_mnist": 60_000, "mnist": 60_000, "synthetic": 4096}
DATASETS = tuple(TRAIN_SIZES)


@dataclass(frozen=True)
class DataSpec(Spec):
    """Which dataset, how it is batched and augmented. Where it lives is not part of the key."""

    dataset: str
    batch_size: int = 128
    augment: bool | None = None  # None: the dataset's default (flip + pad-crop for CIFAR-10)

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise SpecError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.batch_size < 1:
            raise SpecError(f"batch_size must be positive, got {self.batch_size}")

    @property
    def iterations_per_epoch(self) -> int:
        return -(-TRAIN_SIZES[self.dataset] // self.batch_size)


@dataclass(frozen=True)
class ModelSpec(Spec):
    """A named architecture (``resnet20``, ``vgg16``, ``lenet_300_100``...) and its width."""

    name: str
    width: int = 1  # ResNet: filters 16W/32W/64W; VGG, MLP: a multiplier on every layer

    def validate(self) -> None:
        from earlyphase.models import check_model_name

        check_model_name(self.name)
        if self.width < 1:
            raise SpecError(f"model width must be >= 1, got {self.width}")


@dataclass(frozen=True)
class TrainingSpec(Spec):
    """SGD with momentum, weight decay, linear warmup and step milestones."""

    steps: str = "160ep"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: tuple[str, ...] = ("80ep", "120ep")
    gamma: float = 0.1
    warmup: str = "0it"
    eval_every: str = "1ep"

    def validate(self) -> None:
        for step in (self.steps, self.warmup, self.eval_every, *self.milestones):
            parse_step(step, 1)
        if parse_step(self.steps, 1) == 0:
            raise SpecError("training must run for at least one iteration")
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

    fraction: float = 0.2
    layers_to_ignore: tuple[str, ...] = ()

    def validate(self) -> None:
        if not 0 < self.fraction < 1:
            raise SpecError(f"pruning fraction must lie in (0, 1), got {self.fraction}")


PRETRAINING_MODES = ("none",)


@dataclass(frozen=True)
class PretrainingSpec(Spec):
    """What replaces the first phase of training (``none``: ordinary dense training)."""

    mode: str = "none"

    def validate(self) -> None:
        if self.mode not in PRETRAINING_MODES:
            raise SpecError(f"unknown pretraining mode {self.mode!r}; choose one of {PRETRAINING_MODES}")


@dataclass(frozen=True)
class RunSpec(Spec):
    """Everything that determines a dense run and the IMP levels built on it (not the seed)."""

    data: DataSpec
    model: ModelSpec
    training: TrainingSpec = field(default_factory=TrainingSpec)
    pruning: PruningSpec = field(default_factory=PruningSpec)
    pretraining: PretrainingSpec = field(default_factory=PretrainingSpec)

    @property
    def total_iterations(self) -> int:
        return self.training.total_iterations(self.data.iterations_per_epoch)

    def iterations(self, step: str | int) -> int:
        """A step string resolved against this run's dataset and batch size."""
        return parse_step(step, self.data.iterations_per_epoch)

    def check_rewind(self, rewind_iteration: int) -> None:
        if not 0 <= rewind_iteration < self.total_iterations:
            raise SpecError(
                f"rewind iteration {rewind_iteration} is outside training "
                f"(0..{self.total_iterations - 1} for {self.training.steps})"
            )


DYNAMICS_ARCHITECTURES = ("two_layer", "deep", "cnn")
DYNAMICS_ACTIVATIONS = ("relu", "tanh", "erf", "softplus")
DYNAMICS_TRAINED_LAYERS = ("first", "second", "both")
DYNAMICS_TASKS = ("gaussian", "fashion_mnist", "cifar10")
DYNAMICS_LABELLINGS = ("linear", "quadratic", "mixed")
# Two classes per image task when ``classes`` is empty: T-shirt/top vs shirt (Fashion-MNIST, a pair a
# linear model cannot separate well, like the paper's pair) and the paper's cats vs horses (CIFAR-10).
DYNAMICS_DEFAULT_CLASSES = {"fashion_mnist": (0, 6), "cifar10": (3, 7)}


@dataclass(frozen=True)
class DynamicsSpec(Spec):
    """Early-time linear dynamics (Hu et al. 2020): a network and its linear model under full-batch GD."""

    architecture: str = field(
        default="two_layer", metadata={"help": "two_layer, deep (fully connected) or cnn (patches + pooling)"}
    )
    depth: int = field(default=3, metadata={"help": "hidden layers of deep and cnn (two_layer has one)"})
    hidden_width: int = field(default=256, metadata={"help": "hidden units (channels) per layer, m"})
    activation: str = field(default="relu", metadata={"help": "relu, tanh, erf or softplus"})
    patch_size: int = field(
        default=4, metadata={"help": "cnn: side of the square patches of the first layer"}
    )
    patch_stride: int = field(default=4, metadata={"help": "cnn: stride between patches"})
    trained_layers: str = field(
        default="first", metadata={"help": "first (input layer), second (output layer) or both (all layers)"}
    )
    dynamics_lr: float = field(default=4.0, metadata={"help": "gradient-descent learning rate, both models"})
    gd_steps: int = field(default=2000, metadata={"help": "full-batch gradient-descent steps"})
    log_points: int = field(default=25, metadata={"help": "measurements on a log-spaced grid of steps"})
    center_output: bool = field(
        default=True, metadata={"help": "train f - f_0 so the network starts at 0 like the linear model"}
    )
    task: str = field(default="gaussian", metadata={"help": "gaussian, fashion_mnist or cifar10"})
    classes: tuple[int, ...] = field(
        default=(), metadata={"help": "two labels (-1, +1) of an image task; empty: 0 vs 6 / 3 vs 7"}
    )
    input_dim: int = field(default=100, metadata={"help": "gaussian: input dimension d"})
    labelling: str = field(
        default="mixed", metadata={"help": "gaussian labels: linear sign(z1), quadratic sign(z2 z3), mixed"}
    )
    train_examples: int = field(default=2000, metadata={"help": "training examples (paper: 20000)"})
    test_examples: int = field(default=500, metadata={"help": "test examples (paper: 2000)"})

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
        if not self.dynamics_lr > 0:
            raise SpecError(f"dynamics_lr must be positive, got {self.dynamics_lr}")
        if self.log_points < 2:
            raise SpecError(f"log_points must be at least 2, got {self.log_points}")
        if self.classes and (
            len(self.classes) != 2
            or self.classes[0] == self.classes[1]
            or not all(isinstance(c, int) and 0 <= c < 10 for c in self.classes)
        ):
            raise SpecError(f"classes must be two distinct labels in 0..9, got {list(self.classes)}")
        if (
            self.architecture == "cnn"
            and self.task == "gaussian"
            and round(self.input_dim**0.5) ** 2 != self.input_dim
        ):
            raise SpecError(f"a cnn on gaussian inputs needs a square input_dim, got {self.input_dim}")

    @property
    def hidden_layers(self) -> int:
        """1 for two_layer, ``depth`` otherwise."""
        return 1 if self.architecture == "two_layer" else self.depth

    @property
    def class_pair(self) -> tuple[int, int]:
        """The image task's (negative, positive) labels."""
        return tuple(self.classes) if self.classes else DYNAMICS_DEFAULT_CLASSES.get(self.task, (0, 1))
