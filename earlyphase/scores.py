"""Example difficulty scores and the subsets they choose (Paul et al. 2022, docs/experiments.md B).

- EL2N(x, y) = ‖softmax(f(x)) − onehot(y)‖₂ and GraNd(x, y) = ‖∇θ CE(f(x), y)‖₂ (all trainable
  parameters), both on the un-augmented training set in eval mode (BatchNorm uses its running
  statistics), as in mansheej/data_diet.
- Forgetting (Toneva et al. 2019): the number of correct → incorrect transitions in a record of
  per-example correctness over training; never-learned examples rank hardest.

A score network is an ordinary dense run of the RunSpec (its model, optimiser and lr schedule,
initialised from ``seed`` and fed the data order of ``TrainData(spec.data, seed)``) stopped after
``score_steps`` and scored there; the scores of K such networks are averaged. Low scores are easy.
Random class-balanced subsets are :func:`earlyphase.pretraining.balanced_subset`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from earlyphase.data import TrainData
from earlyphase.errors import SpecError
from earlyphase.models import build_model
from earlyphase.specs import PretrainingSpec, RunSpec, ScoreSpec
from earlyphase.training import State, train, training_device

# Score network i uses seed SCORE_SEED_OFFSET + i: independent of the (small) seeds of the runs.
SCORE_SEED_OFFSET = 2_000_000
SUBSET_ENDS = ("easy", "hard")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _chunks(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if len(images) != len(labels):
        raise SpecError(f"{len(images)} images but {len(labels)} labels")
    for i in range(0, len(labels), batch_size):
        yield images[i : i + batch_size], labels[i : i + batch_size]


@torch.no_grad()
def el2n(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> torch.Tensor:
    """‖softmax(f(x)) − onehot(y)‖₂ per example (eval mode); ``images`` as the model takes them."""
    scores = []
    with _eval_mode(model):
        for x, y in _chunks(images, labels, batch_size):
            error = F.softmax(model(x).float(), dim=1)
            error[torch.arange(len(y), device=y.device), y] -= 1
            scores.append(torch.linalg.vector_norm(error, dim=1))
    return torch.cat(scores)


def grand(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """‖∇θ CE(f(x), y)‖₂ per example over all trainable parameters, in eval mode.

    Per-example gradients come from ``vmap(grad(...))`` over a batch (``batch_size`` × number of
    parameters floats at a time), never from a loop over examples."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def example_loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits.float(), y.unsqueeze(0))

    per_example_grads = vmap(grad(example_loss), in_dims=(None, 0, 0))
    scores = []
    with _eval_mode(model):
        for x, y in _chunks(images, labels, batch_size):
            grads = per_example_grads(params, x, y)
            squared = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads.values()]).sum(0)
            scores.append(squared.sqrt())
    return torch.cat(scores)


def forgetting_counts(correct_history: torch.Tensor) -> torch.Tensor:
    """Forgetting events per example from a (T, N) bool record of correctness at T moments.

    A forgetting event is correct at one record and incorrect at the next. Examples correct in no
    record get T, above the ⌊T/2⌋ events any learned example can have, so they rank hardest
    (mansheej/data_diet uses +inf; a finite T keeps averages over networks graded)."""
    if correct_history.ndim != 2 or len(correct_history) == 0:
        raise SpecError(f"correctness history must be (T >= 1, N), got shape {tuple(correct_history.shape)}")
    history = correct_history.bool()
    events = (history[:-1] & ~history[1:]).sum(0)
    never_learned = ~history.any(0)
    return torch.where(never_learned, len(history), events).float()


@torch.no_grad()
def train_correctness(model: nn.Module, data: TrainData) -> torch.Tensor:
    """Whether each un-augmented training example is classified correctly (eval mode), as (N,) bool."""
    with _eval_mode(model):
        return torch.cat([model(x).argmax(1) == y for x, y in data.eval_batches("train")])


def score_seeds(score_spec: ScoreSpec) -> list[int]:
    """The seeds of the K score networks (initialisation and data order alike)."""
    return [SCORE_SEED_OFFSET + i for i in range(score_spec.score_networks)]


def score_network(
    run_spec: RunSpec,
    seed: int,
    score_spec: ScoreSpec,
    device: torch.device | str | None = None,
    data_dir: str | None = None,
) -> dict[str, torch.Tensor]:
    """Train one score network for ``score_steps`` and score every training example: name → (N,) CPU."""
    return scored_network(run_spec, seed, score_spec, device, data_dir)[0]


def scored_network(
    run_spec: RunSpec,
    seed: int,
    score_spec: ScoreSpec,
    device: torch.device | str | None = None,
    data_dir: str | None = None,
) -> tuple[dict[str, torch.Tensor], State]:
    """:func:`score_network` and the network's full state at ``score_steps`` (e.g. to start copies from).

    For forgetting, the correctness of the whole un-augmented train set is recorded (eval mode)
    after every ``forgetting_every`` iterations of training and at the end."""
    device = training_device(str(device) if device else None)
    data = TrainData(run_spec.data, seed, device, data_dir)
    model = build_model(run_spec.model, data.info.num_classes, data.info.shape, seed).to(device)
    end = run_spec.iterations(score_spec.score_steps)
    every = run_spec.iterations(score_spec.forgetting_every)
    history: list[torch.Tensor] = []

    def record(iteration: int, model: nn.Module) -> None:
        if iteration > 0 and iteration % every == 0:
            history.append(train_correctness(model, data))

    forgetting = "forgetting" in score_spec.scores
    training = run_spec.training.replace(eval_every=score_spec.score_steps)  # test only at the end
    result = train(model, data, training, end=end, step_hook=record if forgetting else None)
    scores = {}
    for name in score_spec.scores:
        if name == "forgetting":
            history.append(train_correctness(model, data))
            scores[name] = forgetting_counts(torch.stack(history))
        else:
            score = el2n if name == "el2n" else grand
            scores[name] = torch.cat([score(model, x, y) for x, y in data.eval_batches("train")])
    return {name: value.cpu() for name, value in scores.items()}, result.state


def average_scores(per_network: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean over score networks of each score."""
    if not per_network:
        raise SpecError("no score networks to average")
    names = set(per_network[0])
    if any(set(scores) != names for scores in per_network):
        raise SpecError("score networks computed different scores; cannot average them")
    return {name: torch.stack([scores[name] for scores in per_network]).mean(0) for name in per_network[0]}


def compute_scores(
    run_spec: RunSpec,
    score_spec: ScoreSpec,
    device: torch.device | str | None = None,
    data_dir: str | None = None,
) -> dict[str, torch.Tensor]:
    """All K score networks, one after another, averaged (the engine runs them as parallel trials)."""
    return average_scores(
        [score_network(run_spec, seed, score_spec, device, data_dir) for seed in score_seeds(score_spec)]
    )


def scored_subset(
    scores: torch.Tensor,
    n: int,
    end: str = "easy",
    offset: int = 0,
    labels: torch.Tensor | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Indices (ascending) of ``n`` examples from the ``easy`` (lowest score) or ``hard`` end, after
    skipping ``offset`` examples from that end; ties are broken by index (stable sort).

    With ``labels`` the subset is class-balanced as in lth_diet's SubsetByScore: each class gives
    n // C of its own examples (the first n mod C classes one more), skipping offset / C of its own
    (so ``offset`` must be divisible by C)."""
    if scores.ndim != 1 or torch.isnan(scores).any():
        raise SpecError(f"scores must be a 1-D tensor without NaN, got shape {tuple(scores.shape)}")
    if end not in SUBSET_ENDS:
        raise SpecError(f"unknown subset end {end!r}; choose one of {', '.join(SUBSET_ENDS)}")
    if n < 1 or offset < 0 or offset + n > len(scores):
        raise SpecError(f"cannot take {n} examples at offset {offset} from {len(scores)}")
    order = torch.sort(scores.detach().cpu(), stable=True).indices
    if end == "hard":
        order = order.flip(0)
    if labels is None:
        return order[offset : offset + n].sort().values
    if len(labels) != len(scores):
        raise SpecError(f"{len(labels)} labels for {len(scores)} scores")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if offset % num_classes:
        raise SpecError(f"a class-balanced offset must be divisible by {num_classes} classes, got {offset}")
    per_class, extra = divmod(n, num_classes)
    start = offset // num_classes
    sorted_labels = labels.cpu()[order]
    parts = []
    for c in range(num_classes):
        class_order = order[sorted_labels == c]
        take = per_class + (c < extra)
        if start + take > len(class_order):
            raise SpecError(f"class {c} has {len(class_order)} examples, fewer than offset {start} + {take}")
        parts.append(class_order[start : start + take])
    return torch.cat(parts).sort().values


def lowest_barrier_subset(
    barriers: torch.Tensor,
    n: int,
    offset: int = 0,
    labels: torch.Tensor | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """The ``n`` examples with the lowest per-example loss barrier
    (:func:`earlyphase.connectivity.example_barriers`), optionally class-balanced."""
    return scored_subset(barriers, n, "easy", offset, labels, num_classes)


def subset_indices(
    spec: PretrainingSpec, scores: dict[str, torch.Tensor], labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """The class-balanced training indices a scored subset pretraining (easy, hard or lmc) names, from
    averaged ``scores`` (``barrier``: per-example barriers, for lmc)."""
    if not spec.scored_subset:
        raise SpecError(f"pretraining {spec.name} is not chosen by scores")
    name = "barrier" if spec.subset_kind == "lmc" else spec.subset_score
    if name not in scores:
        raise SpecError(f"subset {spec.name} needs the {name} scores, which were not computed")
    if spec.subset_kind == "lmc":
        return lowest_barrier_subset(scores[name], spec.subset_size, spec.subset_offset, labels, num_classes)
    return scored_subset(
        scores[name], spec.subset_size, spec.subset_kind, spec.subset_offset, labels, num_classes
    )
