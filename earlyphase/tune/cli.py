"""The command line every sweep script shares: presets, overrides, storage, cluster, resume.

Everything the user typed is checked (specs, data on disk, resources, the experiment
directory) before Ray starts; a bad value ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from earlyphase.errors import SpecError
from earlyphase.sweep import SweepSpec
from earlyphase.tune import storage

DEFAULT_STORAGE = os.environ.get("EARLYPHASE_STORAGE", "results")


def parser(family: str, presets: dict[str, SweepSpec], description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"sweeps/{family}.py", description=description)
    p.add_argument("--preset", default="quick", choices=sorted(presets), help="the sweep (default: quick)")
    p.add_argument("--storage-path", default=DEFAULT_STORAGE, help="local dir or s3://... (default: results)")
    p.add_argument("--name", help=f"experiment name (default: {family}-<preset>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue --name, or the latest of this preset")
    p.add_argument("--address", help="join a running Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--seeds", type=int_list, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--rewind-iterations", help="comma-separated k, in iterations or steps: 0,500,2ep")
    p.add_argument("--levels", type=int, help="pruning levels after the dense run")
    p.add_argument("--steps", help="override the training length, e.g. 2ep or 3000it")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractional packs trials on a GPU")
    p.add_argument("--max-failures", type=int, default=3, help="retries of a trial whose worker died")
    p.add_argument("--log-every", type=int, default=100, help="iterations between TensorBoard points")
    p.add_argument("--data-dir", help="where the dataset's files are (default: the dataset's usual place)")
    return p


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def apply_overrides(sweep: SweepSpec, args: argparse.Namespace) -> SweepSpec:
    run = sweep.run
    if args.steps:
        run = run.replace(training=run.training.replace(steps=args.steps))
    changes: dict = {"run": run}
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    if args.rewind_iterations is not None:
        changes["rewind_iterations"] = tuple(
            run.iterations(k.strip()) for k in args.rewind_iterations.split(",")
        )
    if args.levels is not None:
        changes["levels"] = args.levels
        changes["branch_levels"] = tuple(lv for lv in sweep.branch_levels if lv <= args.levels)
    return sweep.replace(**changes)


def _experiment_name(family: str, args: argparse.Namespace, storage_path: str) -> str:
    if args.name:
        return args.name
    prefix = f"{family}-{args.preset}-"
    if args.resume:
        earlier = [d for d in storage.list_dirs(storage_path) if d.startswith(prefix)]
        if not earlier:
            raise SpecError(f"nothing to resume: no {prefix}* experiment in {storage_path}")
        return earlier[-1]
    return prefix + time.strftime("%Y%m%d-%H%M%S")


def main(
    family: str,
    presets: dict[str, SweepSpec],
    description: str,
    argv: list[str] | None = None,
    customize: Callable[[SweepSpec, argparse.Namespace], SweepSpec] | None = None,
    extend_parser: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse, validate, run, summarise. Returns the process exit code."""
    p = parser(family, presets, description)
    if extend_parser:
        extend_parser(p)
    args = p.parse_args(argv)
    if not (args.address or os.environ.get("RAY_ADDRESS")):
        from earlyphase.tune.connect import loopback_environment

        loopback_environment()  # before anything imports ray
    try:
        sweep, execution = _validate(family, presets, args, customize)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from earlyphase.tune.connect import start_ray
    from earlyphase.tune.engine import SweepFailed, run_sweep
    from earlyphase.tune.summary import print_summary

    start_ray(args.address)
    print(f"[earlyphase] experiment {execution.experiment_dir}", flush=True)
    try:
        table = run_sweep(sweep, execution)
    except SweepFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_summary(table)
    print(f"[earlyphase] results: {storage.join(execution.experiment_dir, 'results.csv')}")
    print(f"[earlyphase] tensorboard --logdir {execution.experiment_dir}")
    return 0


def _validate(family, presets, args, customize):
    from earlyphase.data import load_split
    from earlyphase.tune.connect import local_gpu_count
    from earlyphase.tune.engine import Execution, prepare_experiment

    sweep = apply_overrides(presets[args.preset], args)
    if customize:
        sweep = customize(sweep, args)
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0 or args.max_failures < 0 or args.log_every < 0:
        raise SpecError("--cpus-per-trial must be > 0; --gpus-per-trial, --max-failures, --log-every >= 0")
    local = not (args.address or os.environ.get("RAY_ADDRESS"))
    if local and args.gpus_per_trial > 0 and local_gpu_count() == 0:
        raise SpecError(
            "--gpus-per-trial > 0 but this machine has no GPU; use --address to join a GPU cluster"
        )
    data_dir = storage.resolve(args.data_dir) if args.data_dir else None
    if local:  # trials run here: the data must be here too
        load_split(sweep.run.data.dataset, True, data_dir)
    storage_path = storage.resolve(args.storage_path)
    execution = Execution(
        storage_path=storage_path,
        name=_experiment_name(family, args, storage_path),
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_failures=args.max_failures,
        log_every=args.log_every,
        data_dir=data_dir,
    )
    prepare_experiment(sweep, execution, args.resume)
    return sweep, execution
