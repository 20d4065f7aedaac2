"""Masks and pruning: which prunable weights survive.

A :class:`Mask` maps each prunable weight's name to a boolean tensor of its shape. Density is
always counted from the mask itself, over the prunable weights it covers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from earlyphase.errors import SpecError


class Mask(dict[str, torch.Tensor]):
    """Boolean keep-masks for the prunable weights, keyed by parameter name."""

    @classmethod
    def dense(cls, model: nn.Module, ignore: Iterable[str] = ()) -> Mask:
        """All-ones mask over the model's prunable weights, minus ``ignore``."""
        ignore = set(ignore)
        unknown = ignore - set(model.prunable)
        if unknown:
            raise SpecError(f"layers_to_ignore names no prunable weight: {sorted(unknown)}")
        params = dict(model.named_parameters())
        return cls(
            {n: torch.ones_like(params[n], dtype=torch.bool) for n in model.prunable if n not in ignore}
        )

    @property
    def total(self) -> int:
        return sum(m.numel() for m in self.values())

    @property
    def kept(self) -> int:
        return int(sum(int(m.sum()) for m in self.values()))

    @property
    def density(self) -> float:
        return self.kept / self.total

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def to(self, device: torch.device | str) -> Mask:
        return Mask({n: m.to(device) for n, m in self.items()})

    def apply_(self, model: nn.Module) -> None:
        """Zero the pruned weights of ``model`` in place."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, keep in self.items():
                params[name].mul_(keep)


def magnitude_prune(weights: Mapping[str, torch.Tensor], mask: Mask, fraction: float) -> Mask:
    """Global magnitude pruning: remove ``round(fraction × surviving)`` of the surviving weights
    with the smallest |w| across all layers of ``mask``. Ties break by position (stable)."""
    if not 0 < fraction < 1:
        raise SpecError(f"pruning fraction must lie in (0, 1), got {fraction}")
    names = list(mask)
    scores = torch.cat([weights[n].detach().abs().flatten().float().cpu() for n in names])
    keep = torch.cat([mask[n].flatten().cpu() for n in names])
    surviving = int(keep.sum())
    n_prune = round(fraction * surviving)
    scores[~keep] = float("inf")  # already pruned: never chosen again, never revived
    order = torch.sort(scores, stable=True).indices
    new_keep = keep.clone()
    new_keep[order[:n_prune]] = False
    return _unflatten(new_keep, mask)


def random_prune(mask: Mask, seed: int, layerwise: bool = False) -> Mask:
    """A random mask with exactly the same number of kept weights as ``mask``: globally, or
    per layer (``layerwise``) matching each layer's count."""
    generator = torch.Generator().manual_seed(seed)
    if layerwise:
        return Mask({n: _random_keep(m.shape, int(m.sum()), generator) for n, m in mask.items()})
    flat = _random_keep((mask.total,), mask.kept, generator)
    return _unflatten(flat, mask)


def _random_keep(shape: tuple[int, ...] | torch.Size, kept: int, generator: torch.Generator) -> torch.Tensor:
    numel = int(torch.Size(shape).numel())
    keep = torch.zeros(numel, dtype=torch.bool)
    keep[torch.randperm(numel, generator=generator)[:kept]] = True
    return keep.view(shape)


def _unflatten(flat: torch.Tensor, like: Mask) -> Mask:
    out, offset = Mask(), 0
    for name, m in like.items():
        out[name] = flat[offset : offset + m.numel()].view(m.shape).to(m.device)
        offset += m.numel()
    return out
