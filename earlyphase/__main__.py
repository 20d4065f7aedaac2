"""Run one IMP-with-rewinding chain on this machine, without Ray.

python -m earlyphase --run fashion_mnist_lenet --rewind-iteration 500 --levels 5 [--lr 0.1 ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from earlyphase.commandline import (
    OneLineParser,
    add_config_arguments,
    add_spec_arguments,
    apply_flags,
    load_config,
    print_config,
)
from earlyphase.errors import SpecError
from earlyphase.runs import RUNS, get_run
from earlyphase.specs import RunSpec
from earlyphase.store import check_creatable, save_json, save_tensors


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m earlyphase", description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="fashion_mnist_lenet", help=f"a standard run: {', '.join(RUNS)}")
    add_config_arguments(parser, "run spec")
    parser.add_argument("--rewind-iteration", default="0", help="k: the iteration (or step, 2ep) rewound to")
    parser.add_argument("--levels", type=int, default=5, help="pruning levels after the dense run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="where the dataset's files are")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, help="directory for results.json and the masks")
    flags = add_spec_arguments(parser, RunSpec)
    args = parser.parse_args(argv)
    try:
        spec = apply_flags(
            load_config(RunSpec, args.config) if args.config else get_run(args.run), args, flags
        )
        if args.print_config:
            print_config(spec)
            return 0
        return _run(spec, args)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(spec: RunSpec, args) -> int:
    from earlyphase.imp import IMP, check_run

    check_run(spec)
    k = spec.iterations(args.rewind_iteration)
    spec.check_rewind(k)
    if args.levels < 0:
        raise SpecError(f"--levels must be >= 0, got {args.levels}")
    if not 0 <= args.seed < 2**31:
        raise SpecError(f"--seed must lie in [0, 2^31), got {args.seed}")
    device = _device(args.device)
    if args.out:
        _check_writable(args.out)
    imp = IMP(spec, args.seed, device, args.data_dir)  # loads data: fails here if it is missing

    print(f"{'level':>5} {'density':>8} {'test_acc':>8} {'test_loss':>9} {'time_s':>7}")
    rows, masks = [], {}
    for run in imp.run(k, args.levels):
        m = run.metrics
        print(
            f"{run.level:>5} {m['density']:>8.4f} {m['test_accuracy']:>8.4f} "
            f"{m['test_loss']:>9.4f} {m['wall_time_s']:>7.1f}",
            flush=True,
        )
        rows.append({**m, "seed": args.seed, "rewind_iteration": k})
        masks[run.level] = dict(run.mask)
    if args.out:
        save_json(args.out / "results.json", {"spec": spec.to_dict(), "spec_key": spec.key(), "rows": rows})
        save_tensors(args.out / "masks.pt", masks)
    return 0


def _device(name: str | None):
    """``--device`` as a torch device that exists here (None: CUDA when available, else the CPU)."""
    import torch

    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SpecError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"--device {name} but no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        raise SpecError(f"--device {name}: only cpu and cuda are supported")
    return device


def _check_writable(out: Path) -> None:
    """Refuse an --out that cannot be written before anything trains (nothing is left behind)."""
    try:
        check_creatable(out)
    except OSError as error:
        raise SpecError(f"--out {out} cannot be written: {error.strerror or error}") from None


if __name__ == "__main__":
    sys.exit(main())
