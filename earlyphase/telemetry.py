"""Early-phase telemetry (docs/experiments.md A2, Figures 2–3 of Frankle, Schwab & Morcos 2020).

:class:`EarlyPhaseTelemetry` is a ``step_hook`` for :func:`earlyphase.training.train`: at each
scheduled iteration t it records, from the weights w_t before the update, test and train
loss/accuracy, mean |w|, the fraction of signs flipped since w_0, a few tracked weights, the
norm of the batch-t gradient and a CPU snapshot of the prunable weights. :meth:`finish` adds
the distances and cosines to w_0 and w_final. Weight-based metrics are computed over all
prunable weights and, given a ``split`` mask, over its kept and pruned weights separately.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import torch
from torch import nn

from earlyphase.data import TrainData
from earlyphase.masks import Mask
from earlyphase.training import loss_accuracy

COLUMNS = ("iteration", "metric", "group", "value")


def log_schedule(end: int = 4000, every_until: int = 100, points: int = 60) -> list[int]:
    """Sorted unique iterations in [0, ``end``]: every iteration up to ``every_until``, then
    ``points`` geometrically spaced iterations from ``every_until`` to ``end`` (rounded, so a few
    may coincide), ``end`` always included."""
    if end < 0 or every_until < 0 or points < 0:
        raise ValueError(f"log_schedule needs non-negative arguments, got {end}, {every_until}, {points}")
    iterations = set(range(min(every_until, end) + 1))
    if end > every_until:
        low = max(every_until, 1)
        iterations.update(round(low * (end / low) ** (i / points)) for i in range(1, points + 1))
        iterations.add(end)
    return sorted(iterations)


def sign_flip_fraction(w: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
    """Fraction of entries whose sign (−1, 0 or +1) differs between ``w`` and ``w0``, as a 0-dim
    tensor. A weight that is 0 in both has not flipped; one that became or left 0 has."""
    return (torch.sign(w) != torch.sign(w0)).float().mean()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two flat tensors (in float64), as a 0-dim tensor; NaN for a zero vector."""
    a, b = a.double(), b.double()
    return (a @ b) / (torch.linalg.vector_norm(a) * torch.linalg.vector_norm(b))


def l2_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance ‖a − b‖ of two flat tensors (in float64), as a 0-dim tensor."""
    return torch.linalg.vector_norm(a.double() - b.double())


def _flatten(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().flatten().float() for t in tensors])


class EarlyPhaseTelemetry:
    """Records the early-phase metrics at the iterations of ``schedule``; use ``train(...,
    step_hook=telemetry.hook)``, then :meth:`finish` with the final state, then :meth:`table`.

    ``model`` provides w_0 (its weights now, i.e. the initialisation) and the prunable weight
    names; the hook reads the model it is called with. Metrics (``group`` "all" unless noted):

    - ``test_loss``, ``test_accuracy`` (whole test split) and ``train_loss``, ``train_accuracy``
      (first ``train_eval_examples`` un-augmented training examples), in eval mode;
    - ``grad_norm``: L2 norm of the batch-t gradients of all parameters that have one;
    - ``weight_0`` … ``weight_{tracked-1}``: prunable weights at positions :attr:`tracked_index`
      of the flattened prunable weights, drawn uniformly without replacement from ``seed``;
    - per group: ``mean_abs_weight``, ``sign_flip_fraction`` (vs w_0, see
      :func:`sign_flip_fraction`) and, after :meth:`finish`, ``distance_to_init``,
      ``distance_to_final``, ``cosine_to_init``, ``cosine_to_final``.

    Groups are "all" and, when ``split`` is given, "kept" and "pruned" (its True and False
    entries; prunable weights it does not cover count as kept). Metrics of an empty group are NaN.
    Each scheduled iteration is recorded once; as the hook runs before each update, w_end of a
    run of ``end`` iterations is never recorded (it is the final state).
    """

    def __init__(
        self,
        model: nn.Module,
        data: TrainData,
        schedule: Iterable[int],
        seed: int,
        tracked: int = 10,
        train_eval_examples: int = 10_000,
        split: Mask | None = None,
    ):
        self.data = data
        self.device = torch.device(data.device)
        self.schedule = frozenset(schedule)
        self.train_eval_examples = train_eval_examples
        self.prunable = tuple(model.prunable)
        params = dict(model.named_parameters())
        w0 = _flatten(params[n] for n in self.prunable).cpu()
        if train_eval_examples < 1:
            raise ValueError(f"train_eval_examples must be positive, got {train_eval_examples}")
        if not 0 <= tracked <= w0.numel():
            raise ValueError(f"cannot track {tracked} of {w0.numel()} prunable weights")
        generator = torch.Generator().manual_seed(seed)
        self.tracked_index = torch.randperm(w0.numel(), generator=generator)[:tracked]
        self.groups: dict[str, torch.Tensor | None] = {"all": None}
        if split is not None:
            keep = torch.cat(
                [
                    split[n].flatten().cpu()
                    if n in split
                    else torch.ones(params[n].numel(), dtype=torch.bool)
                    for n in self.prunable
                ]
            )
            self.groups["kept"] = keep.nonzero().squeeze(1)
            self.groups["pruned"] = (~keep).nonzero().squeeze(1)
        self.w0 = w0
        self.snapshots: dict[int, torch.Tensor] = {}
        self.rows: list[dict[str, float | int | str]] = []
        self.finished = False
        # device copies, so that the hook never synchronises except once to read its metrics
        self._w0 = w0.to(self.device)
        self._tracked = self.tracked_index.to(self.device)
        self._groups = {g: None if i is None else i.to(self.device) for g, i in self.groups.items()}

    def hook(self, t: int, model: nn.Module) -> None:
        """The ``step_hook``: record iteration ``t`` if it is scheduled and not yet recorded."""
        if t not in self.schedule or t in self.snapshots:
            return
        metrics: list[tuple[str, str, torch.Tensor]] = []
        was_training = model.training
        model.eval()  # eval mode: BN uses and does not update its running statistics
        try:
            for split, limit in (("test", None), ("train", self.train_eval_examples)):
                batches = self.data.eval_batches(split)
                loss, accuracy = loss_accuracy(model, batches, self.device, limit)
                metrics += [(f"{split}_loss", "all", loss), (f"{split}_accuracy", "all", accuracy)]
        finally:
            model.train(was_training)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if grads:
            norms = torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])
            metrics.append(("grad_norm", "all", torch.linalg.vector_norm(norms)))
        params = dict(model.named_parameters())
        w = _flatten(params[n] for n in self.prunable)
        metrics += [(f"weight_{i}", "all", v) for i, v in enumerate(w[self._tracked])]
        for group, index in self._groups.items():
            wg, w0g = (w, self._w0) if index is None else (w[index], self._w0[index])
            metrics.append(("mean_abs_weight", group, wg.abs().mean()))
            metrics.append(("sign_flip_fraction", group, sign_flip_fraction(wg, w0g)))
        values = torch.stack([v.float() for _, _, v in metrics]).tolist()
        self._add(t, [(m, g) for m, g, _ in metrics], values)
        self.snapshots[t] = w.cpu()

    def finish(self, final_state: Mapping[str, torch.Tensor]) -> None:
        """Add distances and cosines of every recorded w_t to w_0 and to w_final, the prunable
        weights of ``final_state`` (a state dict: ``model.state_dict()`` or a run's ``state``)."""
        if self.finished:
            raise RuntimeError("finish() was already called")
        final = _flatten(final_state[n] for n in self.prunable).cpu()
        for t, w in sorted(self.snapshots.items()):
            keys, values = [], []
            for group, index in self.groups.items():
                wg, w0g, wfg = (
                    (w, self.w0, final) if index is None else (w[index], self.w0[index], final[index])
                )
                for metric, value in (
                    ("distance_to_init", l2_distance(wg, w0g)),
                    ("distance_to_final", l2_distance(wg, wfg)),
                    ("cosine_to_init", cosine(wg, w0g)),
                    ("cosine_to_final", cosine(wg, wfg)),
                ):
                    keys.append((metric, group))
                    values.append(float(value))
            self._add(t, keys, values)
        self.finished = True

    def table(self) -> pd.DataFrame:
        """The tidy table: one row per (iteration, metric, group), sorted, with a float ``value``."""
        frame = pd.DataFrame(self.rows, columns=list(COLUMNS))
        return frame.sort_values(["iteration", "metric", "group"], kind="stable", ignore_index=True)

    def _add(self, t: int, keys: list[tuple[str, str]], values: list[float]) -> None:
        self.rows += [
            {"iteration": t, "metric": m, "group": g, "value": v} for (m, g), v in zip(keys, values)
        ]
