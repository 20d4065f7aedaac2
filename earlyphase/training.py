"""The training loop: SGD from iteration ``start`` to ``end`` with the schedule positioned at ``start``.

Data are device-resident (:class:`earlyphase.data.TrainData`), masks are enforced by zeroing
the pruned weights' gradients in one fused op (so neither the weights nor their momentum ever
move), metrics are accumulated on the device and synchronised only when logged.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from earlyphase.data import TrainData
from earlyphase.masks import Mask
from earlyphase.specs import TrainingSpec, parse_step

State = dict[str, torch.Tensor]


def training_device(preferred: str | None = None) -> torch.device:
    """CUDA when a device really exists (Ray sets CUDA_VISIBLE_DEVICES), else the CPU."""
    if preferred:
        return torch.device(preferred)
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return torch.device("cpu")
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def capture_state(model: nn.Module) -> State:
    """The full state: weights, BN parameters, running statistics and counters (cloned)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast for ``precision`` bf16 on CUDA; nothing (fp32) otherwise, the CPU included."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def loss_accuracy(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    limit: int | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy (0-dim device tensors, no synchronisation) over the first
    ``limit`` examples of ``batches`` (all of them when None), in the model's current mode, under
    :func:`autocast` for ``precision``."""
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    count = 0
    with autocast(device, precision):
        for x, y in batches:
            if limit is not None:
                x, y = x[: limit - count], y[: limit - count]
            logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            count += len(y)
            if limit is not None and count >= limit:
                break
    return loss_sum / count, correct / count


def evaluate(
    model: nn.Module, data: TrainData, split: str = "test", precision: str = "fp32"
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split, un-augmented, in eval mode."""
    was_training = model.training
    model.eval()
    try:
        loss, accuracy = loss_accuracy(model, data.eval_batches(split), data.device, precision=precision)
    finally:
        model.train(was_training)
    return loss.item(), accuracy.item()


@dataclass
class TrainResult:
    """The final state, the states captured on the way, the logged curve (one dict per row) and the
    optimiser's final momentum buffers by parameter name (empty without momentum)."""

    state: State
    captured: dict[int, State] = field(default_factory=dict)
    optimizer_state: State = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def final(self) -> dict[str, float]:
        """The last row that has test metrics."""
        return next(row for row in reversed(self.curve) if "test_accuracy" in row)


def train(
    model: nn.Module,
    data: TrainData,
    spec: TrainingSpec,
    *,
    start: int = 0,
    end: int | None = None,
    mask: Mask | None = None,
    capture: Iterable[int] = (),
    log_every: int = 0,
    on_log: Callable[[dict[str, float]], None] | None = None,
    step_hook: Callable[[int, nn.Module], None] | None = None,
    optimizer_state: State | None = None,
) -> TrainResult:
    """Train ``model`` in place from iteration ``start`` to ``end`` (default: the spec's length).

    A fresh SGD optimiser is used, or one continuing from ``optimizer_state`` (momentum buffers by
    parameter name, as a previous :class:`TrainResult` returns them; a parameter missing there starts
    from a zero buffer, which without dampening is exactly a fresh buffer's first step). The step at
    iteration t uses ``spec.lr_at(t)``; steps and evaluations run in ``spec.precision`` (:func:`autocast`).
    The state *after* t steps is captured for every t in ``capture`` (``start`` included if asked).
    Test metrics are logged every ``spec.eval_every`` iterations and at ``end``; running train
    loss/accuracy and the lr every ``log_every`` iterations as well (0: only with evals).
    ``step_hook(t, model)`` runs at every step after the backward pass, before the update: the
    weights are w_t and the gradients those of batch t (masked).
    """
    ipe = data.iterations_per_epoch
    end = spec.total_iterations(ipe) if end is None else end
    if not 0 <= start <= end:
        raise ValueError(f"cannot train from iteration {start} to {end}")
    device = data.device
    eval_every = parse_step(spec.eval_every, ipe)
    lr_at = spec.lr_schedule(ipe)
    capture = set(capture)

    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    model.train()
    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD(
        named.values(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay, fused=True
    )
    if optimizer_state is not None and spec.momentum:
        for name, p in named.items():
            buffer = optimizer_state.get(name)
            optimizer.state[p]["momentum_buffer"] = (
                torch.zeros_like(p) if buffer is None else torch.empty_like(p).copy_(buffer)
            )
    masked_params, mask_values = [], []
    if mask is not None:
        mask.apply_(model)
        for name, keep in mask.items():
            masked_params.append(named[name])
            mask_values.append(keep.to(device=device, dtype=named[name].dtype))

    result = TrainResult(state={})
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    began = time.perf_counter()

    def log(iteration: int, with_eval: bool) -> None:
        nonlocal seen
        row: dict[str, float] = {"iteration": iteration, "lr": lr_at(max(iteration - 1, 0))}
        if seen:
            row["train_loss"] = loss_sum.item() / seen
            row["train_accuracy"] = correct.item() / seen
            loss_sum.zero_()
            correct.zero_()
            seen = 0
        if with_eval:
            row["test_loss"], row["test_accuracy"] = evaluate(model, data, precision=spec.precision)
        row["wall_time_s"] = time.perf_counter() - began
        result.curve.append(row)
        if on_log is not None:
            on_log(row)

    if start in capture:
        result.captured[start] = capture_state(model)
    for iteration in range(start, end):
        lr = lr_at(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = data.batch(iteration)
        with autocast(device, spec.precision):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if masked_params:
            torch._foreach_mul_([p.grad for p in masked_params], mask_values)
        if step_hook is not None:
            step_hook(iteration, model)
        optimizer.step()
        loss_sum += loss.detach() * y.numel()
        correct += (logits.detach().argmax(1) == y).sum()
        seen += y.numel()

        done = iteration + 1
        if done in capture:
            result.captured[done] = capture_state(model)
        is_eval = done % eval_every == 0 or done == end
        if is_eval or (log_every and done % log_every == 0):
            log(done, is_eval)
    if start == end:
        log(end, True)
    result.state = capture_state(model)
    result.optimizer_state = {
        name: optimizer.state[p]["momentum_buffer"].detach().clone()
        for name, p in named.items()
        if optimizer.state[p].get("momentum_buffer") is not None
    }
    result.wall_time_s = time.perf_counter() - began
    return result
