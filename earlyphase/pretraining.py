"""Pretraining modes: what replaces the first P iterations of training (docs/experiments.md A4).

A pretrained run trains the network for P iterations on a modified task, with the run's optimiser
settings and its lr schedule for iterations 0..P, then continues from P to the end on the real data
and labels with the schedule positioned at P, exactly like a run rewound to k = P. The modes:

- ``supervised``: the real task (so the pretrained run *is* ordinary dense training);
- ``random_labels``: a fraction f of the training labels replaced by uniform random classes;
- ``rotation``: each image rotated by a multiple of 90°, the rotation is the 4-way label; the
  output layer is then replaced by the 10-way network's freshly initialised one;
- ``blur``: each image down-sampled by b and up-sampled back, bilinear;
- ``subset``: only a class-balanced subset of n training examples, random or (docs/experiments.md B)
  the easiest / hardest by an example score or those of lowest per-example barrier; the indices of
  a scored subset come from the caller (:func:`earlyphase.scores.scored_subset`).

With ``sparse_level`` L > 0 the IMP subnetwork of level L (its mask, supplied by the caller) is
pretrained and trained on, the mask applied throughout. The modified training sets are drawn once
per seed from generators seeded by ``seed + PRETRAINING_SEED_OFFSET`` and kept on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from earlyphase.catalog import DATASETS
from earlyphase.data import TrainData, balanced_subset
from earlyphase.errors import SpecError
from earlyphase.masks import Mask
from earlyphase.models import build_model
from earlyphase.specs import ModelSpec, PretrainingSpec, RunSpec
from earlyphase.training import State, train

# Label and subset draws use seed + this: independent of the data order (seed, epoch), the
# initialisation (seed) and the branches' draws (seed + 1,000,000).
PRETRAINING_SEED_OFFSET = 2_000_000
# The rotated test set (pretraining-task test metrics) is the same for every seed.
TEST_ROTATION_SEED = 0
ROTATIONS = 4
_BLUR_CHUNK = 4096  # images blurred at once: bounds the float copy's memory


def random_labels(labels: torch.Tensor, fraction: float, num_classes: int, seed: int) -> torch.Tensor:
    """A copy of ``labels`` with exactly ``round(fraction * n)`` of them, at seeded random positions,
    replaced by uniform random classes (which may coincide with the true one); the rest untouched.
    Positions and classes depend only on (n, fraction, num_classes, seed), not on the labels."""
    if not 0 <= fraction <= 1:
        raise SpecError(f"random-label fraction must lie in [0, 1], got {fraction}")
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    replaced = torch.randperm(n, generator=g)[: round(fraction * n)]
    classes = torch.randint(num_classes, (len(replaced),), generator=g)
    out = labels.clone()
    out[replaced.to(labels.device)] = classes.to(labels.device, labels.dtype)
    return out


def rotation_task(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image (N, C, H, W) rotated counter-clockwise by r × 90° (``torch.rot90``, exact, no
    interpolation) and the labels r ∈ {0, 1, 2, 3}: a seeded shuffle of 0,1,2,3,0,1,... so each
    rotation labels ⌊n/4⌋ or ⌈n/4⌉ images (exactly n/4 when 4 divides n)."""
    height, width = images.shape[-2:]
    if height != width:
        raise SpecError(f"rotation pretraining needs square images, got {height}×{width}")
    g = torch.Generator().manual_seed(seed)
    turns = (torch.arange(len(images)) % ROTATIONS)[torch.randperm(len(images), generator=g)]
    turns = turns.to(images.device)
    rotated = images.clone()
    for r in range(1, ROTATIONS):
        chosen = turns == r
        rotated[chosen] = torch.rot90(images[chosen], r, dims=(-2, -1))
    return rotated, turns


def blur(images: torch.Tensor, factor: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) down-sampled by ``factor`` and up-sampled back to H × W, bilinear
    with ``align_corners=False`` (pixel areas, as PIL and torchvision resize) and the down-sampling
    anti-aliased (each low-resolution pixel averages its neighbourhood, like PIL's bilinear resize,
    instead of sampling 2 × 2 of every b × b pixels); rounded back to uint8. Factor 1 is the identity,
    a constant image stays that image."""
    height, width = images.shape[-2:]
    if factor < 1 or height % factor or width % factor:
        raise SpecError(f"blur factor must be >= 1 and divide the image size {height}×{width}, got {factor}")
    out = torch.empty_like(images)
    for chunk, target in zip(images.split(_BLUR_CHUNK), out.split(_BLUR_CHUNK)):
        small = F.interpolate(
            chunk.float(), size=(height // factor, width // factor), mode="bilinear", antialias=True
        )
        back = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        target.copy_(back.round_().clamp_(0, 255))
    return out


def replace_output_layer(
    state: State, model: ModelSpec, num_classes: int, shape: tuple[int, int, int], seed: int
) -> State:
    """``state`` with its output layer (weight and bias) replaced by the one ``build_model(model,
    num_classes, shape, seed)`` initialises, i.e. the paper's initialiser; every other tensor is
    the same object. The pretrained run passes its own seed, so the new layer is exactly the output
    layer of its 10-way network at iteration 0 (the output layer is initialised last, so the rest
    of a 4-way and a 10-way network of one seed start identical too)."""
    fresh = build_model(model, num_classes, shape, seed)
    fresh_state = fresh.state_dict()
    out = dict(state)
    for name in fresh.output_layer:
        out[name] = fresh_state[name].to(state[name].device)
    return out


def output_classes(spec: PretrainingSpec, num_classes: int) -> int:
    """Width of the output layer while pretraining: 4 for rotation, the dataset's classes otherwise."""
    return ROTATIONS if spec.mode == "rotation" else num_classes


def check_pretraining(run: RunSpec) -> int:
    """Refuse (SpecError) pretraining this run's dataset and length cannot do; return P in iterations.

    Whether every class has ``subset_size / classes`` examples is checked when the subset is drawn."""
    spec = run.pretraining
    if spec.mode == "none":
        return 0
    length = run.iterations(spec.iterations)
    if length >= run.total_iterations:
        raise SpecError(
            f"pretraining for {spec.iterations} ({length} iterations) leaves no training: "
            f"it must be shorter than {run.training.steps} ({run.total_iterations} iterations)"
        )
    info = DATASETS[run.data.dataset]
    _, height, width = run.data.input_shape
    if spec.mode == "rotation" and height != width:
        raise SpecError(f"rotation pretraining needs square images; {info.name} is {height}×{width}")
    if spec.mode == "blur" and (height % spec.blur_factor or width % spec.blur_factor):
        raise SpecError(
            f"blur factor {spec.blur_factor} does not divide {info.name}'s image size {height}×{width}"
        )
    if spec.mode == "subset":
        train_size = run.data.train_examples
        if spec.subset_size + spec.subset_offset > train_size:
            raise SpecError(
                f"subset of {spec.subset_size} (offset {spec.subset_offset}) is larger than "
                f"{info.name}'s {train_size} training examples"
            )
        for what, value in (("size", spec.subset_size), ("offset", spec.subset_offset)):
            if value % info.num_classes:
                raise SpecError(
                    f"subset {what} {value} is not divisible by {info.name}'s {info.num_classes} classes"
                )
    return length


def pretraining_data(
    data: TrainData, spec: PretrainingSpec, seed: int, subset: torch.Tensor | None = None
) -> TrainData:
    """The training data the mode pretrains on, as a view of ``data`` (same batching, on the device).
    ``subset``: the training indices of a scored subset (easy, hard, lmc), exactly for those.

    Its test set carries the pretraining task where the mode changes the inputs or the task (blurred
    images; rotated images with rotation labels), so the logged test metrics measure that task.
    Rotation turns augmentation off: a horizontal flip after a 90° rotation equals a 270° rotation
    of the flipped image, which would make rotation labels 1 and 3 indistinguishable."""
    task_seed = seed + PRETRAINING_SEED_OFFSET
    if (subset is not None) != spec.scored_subset:
        raise SpecError(f"pretraining {spec.name}: the indices of a subset come exactly with scored subsets")
    if spec.mode == "supervised":
        return data
    if spec.mode == "random_labels":
        labels = random_labels(data.train_y, spec.label_fraction, data.info.num_classes, task_seed)
        return data.view(data.train_x, labels)
    if spec.mode == "rotation":
        test = rotation_task(data.test_x, TEST_ROTATION_SEED)
        return data.view(*rotation_task(data.train_x, task_seed), test=test, augment=False)
    if spec.mode == "blur":
        test = (blur(data.test_x, spec.blur_factor), data.test_y)
        return data.view(blur(data.train_x, spec.blur_factor), data.train_y, test=test)
    if spec.mode == "subset":
        if subset is None:
            subset = balanced_subset(data.train_y, spec.subset_size, data.info.num_classes, task_seed)
        index = subset.to(data.device)
        return data.view(data.train_x[index], data.train_y[index])
    raise SpecError(f"pretraining mode {spec.mode!r} has no training data")


@dataclass
class Pretrained:
    """The network at the end of pretraining (iteration P), ready for the real task: its full state
    (output layer replaced after rotation), the optimiser's momentum buffers to continue with
    (None: a fresh optimiser), the pretraining curve (rows tagged ``pretraining_phase = 1``) and
    its wall time."""

    iterations: int
    state: State
    optimizer_state: State | None
    curve: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0


def pretrain(
    run: RunSpec,
    seed: int,
    data: TrainData,
    mask: Mask | None = None,
    subset: torch.Tensor | None = None,
    **train_options,
) -> Pretrained:
    """Pretrain the seed's initialisation for P iterations on the mode's task, with the run's SGD
    settings and lr schedule for iterations 0..P; ``mask`` (the level's, exactly when the spec asks
    for sparse pretraining) is applied, except to rotation's temporary 4-way output layer; ``subset``
    holds the training indices of a scored subset (:func:`pretraining_data`).

    The network has ``output_classes`` outputs; every other tensor starts as the 10-way network's
    initialisation. After rotation the output layer is replaced (:func:`replace_output_layer`) and
    its momentum dropped (it restarts from zero). ``train_options`` (``log_every``, ``on_log``,
    ``step_hook``) go to :func:`earlyphase.training.train`; logged rows carry ``pretraining_phase = 1``.
    """
    spec = run.pretraining
    length = check_pretraining(run)
    if not length:
        raise SpecError("pretraining mode none has nothing to pretrain")
    if (mask is None) != (spec.sparse_level == 0):
        raise SpecError(
            "sparse pretraining (sparse_level > 0) needs the level's mask, dense pretraining none"
        )
    info = data.info
    model = build_model(run.model, output_classes(spec, info.num_classes), info.shape, seed)
    if mask is not None and spec.mode == "rotation":  # the temporary 4-way output layer stays dense
        mask = Mask({name: keep for name, keep in mask.items() if name not in model.output_layer})
    forward = train_options.pop("on_log", None)
    if forward is not None:
        train_options["on_log"] = lambda row: forward({**row, "pretraining_phase": 1.0})
    result = train(
        model,
        pretraining_data(data, spec, seed, subset),
        run.training,
        end=length,
        mask=mask,
        **train_options,
    )
    state, momentum = result.state, result.optimizer_state
    if spec.mode == "rotation":
        state = replace_output_layer(state, run.model, info.num_classes, info.shape, seed)
        momentum = {name: b for name, b in momentum.items() if name not in model.output_layer}
    curve = [{**row, "pretraining_phase": 1.0} for row in result.curve]
    momentum = None if spec.reset_optimizer else momentum
    return Pretrained(length, state, momentum, curve, result.wall_time_s)
