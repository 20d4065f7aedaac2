"""Run one IMP-with-rewinding experiment on this machine, without Ray.

python -m earlyphase --preset fashion_mnist_lenet --rewind-iteration 500 --levels 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from earlyphase.errors import SpecError
from earlyphase.presets import PRESETS, get_preset
from earlyphase.store import save_json, save_tensors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m earlyphase", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fashion_mnist_lenet", help=f"one of {', '.join(PRESETS)}")
    parser.add_argument("--rewind-iteration", type=int, default=0, help="k: the iteration rewound to")
    parser.add_argument("--levels", type=int, default=5, help="pruning levels after the dense run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", help="override the preset's training length, e.g. 2ep or 500it")
    parser.add_argument("--data-dir", help="where the dataset's files are")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, help="directory for results.json and the masks")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from earlyphase.imp import IMP

    spec = get_preset(args.preset)
    if args.steps:
        spec = spec.replace(training=spec.training.replace(steps=args.steps))
    spec.check_rewind(args.rewind_iteration)
    if args.levels < 0:
        raise SpecError(f"--levels must be >= 0, got {args.levels}")
    imp = IMP(spec, args.seed, args.device, args.data_dir)  # loads data: fails here if it is missing

    print(f"{'level':>5} {'density':>8} {'test_acc':>8} {'test_loss':>9} {'time_s':>7}")
    rows, masks = [], {}
    for run in imp.run(args.rewind_iteration, args.levels):
        m = run.metrics
        print(
            f"{run.level:>5} {m['density']:>8.4f} {m['test_accuracy']:>8.4f} "
            f"{m['test_loss']:>9.4f} {m['wall_time_s']:>7.1f}",
            flush=True,
        )
        rows.append({**m, "seed": args.seed, "rewind_iteration": args.rewind_iteration})
        masks[run.level] = dict(run.mask)
    if args.out:
        save_json(args.out / "results.json", {"spec": spec.to_dict(), "spec_key": spec.key(), "rows": rows})
        save_tensors(args.out / "masks.pt", masks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
