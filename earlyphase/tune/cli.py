"""The command line every sweep script shares: presets, spec flags, storage, cluster, resume.

Everything the user typed is checked (specs, data on disk, resources, the experiment
directory) before Ray starts; a bad value ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from earlyphase.commandline import (
    OneLineParser,
    add_config_arguments,
    add_spec_arguments,
    apply_flags,
    finite_number,
    load_config,
    print_config,
)
from earlyphase.errors import SpecError
from earlyphase.specs import Spec
from earlyphase.sweep import SweepSpec
from earlyphase.tune import storage

DEFAULT_STORAGE = os.environ.get("EARLYPHASE_STORAGE", "results")


def parser(
    family: str, presets: dict[str, Spec], description: str, spec_class: type[Spec] = SweepSpec
) -> tuple[argparse.ArgumentParser, list]:
    """The sweep's parser: preset, config, execution flags, and a flag for every field of the sweep."""
    p = OneLineParser(prog=f"sweeps/{family}.py", description=description)
    p.add_argument("--preset", default="quick", choices=sorted(presets), help="the sweep (default: quick)")
    add_config_arguments(p, "sweep")
    if spec_class is SweepSpec:
        p.add_argument("--list-interventions", nargs=0, action=_ListInterventions, help="list them and exit")
    run = p.add_argument_group("execution (not part of the sweep's key)")
    run.add_argument(
        "--storage-path", default=DEFAULT_STORAGE, help="local dir or s3://... (default: results)"
    )
    run.add_argument("--name", help=f"experiment name (default: {family}-<preset>-<time>)")
    run.add_argument("--resume", action="store_true", help="continue --name, or the latest of this preset")
    run.add_argument("--address", help="join a running Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    run.add_argument(
        "--shared-storage",
        action="store_true",
        help="the local --storage-path is shared by every node (NFS): allowed with --address",
    )
    run.add_argument("--cpus-per-trial", type=finite_number, default=1.0)
    run.add_argument(
        "--gpus-per-trial", type=finite_number, default=0.0, help="fractional packs trials on a GPU"
    )
    run.add_argument("--max-failures", type=int, default=3, help="retries of a trial whose worker died")
    run.add_argument("--log-every", type=int, default=100, help="iterations between TensorBoard points")
    run.add_argument("--data-dir", help="where the dataset's files are (default: the dataset's usual place)")
    return p, add_spec_arguments(p, spec_class)


class _ListInterventions(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from earlyphase.interventions import describe

        print(describe())
        parser.exit()


def resolve_sweep(
    presets: dict[str, Spec], args: argparse.Namespace, flags: list, spec_class: type[Spec] = SweepSpec
) -> Spec:
    """The preset (or ``--config``) with every given flag applied. ``--levels`` without
    ``--intervention-levels`` drops the intervention levels it cuts off; ``--steps`` without
    ``--milestones`` puts the lr milestones at the same fractions of the new length
    (:meth:`~earlyphase.specs.RunSpec.scaled_milestones`; warmup and rewind iterations stay as given)."""
    sweep = load_config(spec_class, args.config) if args.config else presets[args.preset]
    if getattr(args, "spec__levels", None) is not None and args.spec__intervention_levels is None:
        kept = tuple(lv for lv in sweep.intervention_levels if lv <= args.spec__levels)
        sweep = sweep.replace(intervention_levels=kept)
    if getattr(args, "spec__run__training__steps", None) is None:
        return apply_flags(sweep, args, flags)
    base = sweep.run  # the old milestones may lie beyond the new end: set them after the length
    sweep = apply_flags(
        sweep.replace(run=base.replace(training=base.training.replace(milestones=()))), args, flags
    )
    if args.spec__run__training__milestones is None:
        training = sweep.run.training.replace(milestones=sweep.run.scaled_milestones(base))
        sweep = sweep.replace(run=sweep.run.replace(training=training))
    return sweep


def _experiment_name(family: str, args: argparse.Namespace, storage_path: str) -> str:
    if args.name:
        return args.name
    prefix = f"{family}-{'config' if args.config else args.preset}-"
    if args.resume:
        earlier = [d for d in storage.list_dirs(storage_path) if d.startswith(prefix)]
        if not earlier:
            raise SpecError(f"nothing to resume: no {prefix}* experiment in {storage_path}")
        return earlier[-1]
    return prefix + time.strftime("%Y%m%d-%H%M%S")


def main(
    family: str,
    presets: dict[str, Spec],
    description: str,
    argv: list[str] | None = None,
    spec_class: type[Spec] = SweepSpec,
    runner: str = "earlyphase.tune.engine:run_sweep",
) -> int:
    """Parse, validate, run, summarise; returns the process exit code. ``spec_class`` is the sweep's
    spec (its fields become flags; it names its ``datasets()``); ``runner`` (``module:function``,
    imported after Ray is set up) runs it: ``runner(sweep, execution) -> Outcome``."""
    p, flags = parser(family, presets, description, spec_class)
    args = p.parse_args(argv)
    if not (args.address or os.environ.get("RAY_ADDRESS")):
        from earlyphase.tune.connect import loopback_environment

        loopback_environment()  # before anything imports ray
    try:
        sweep = resolve_sweep(presets, args, flags, spec_class)
        if args.print_config:
            print_config(sweep)
            return 0
        execution = _validate(family, sweep, args)  # nothing written, nothing started yet
        # Ray joined (or started), then the experiment claimed: nothing is written if Ray is unreachable
        lease = _launch(family, runner, sweep, execution, args)
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import importlib

    from earlyphase.tune.engine import SweepFailed

    module, function = runner.split(":")
    run = getattr(importlib.import_module(module), function)
    print(f"[earlyphase] experiment {execution.experiment_dir}", flush=True)
    try:
        outcome = run(sweep, execution)
    except SweepFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        lease.release()
    print(f"\n{outcome.summary}\n")
    for path in outcome.tables:
        print(f"[earlyphase] results:     {path}")
    print(f"[earlyphase] tensorboard: tensorboard --logdir {execution.experiment_dir}")
    print(f"[earlyphase] report:      python analysis/report.py {execution.experiment_dir}", flush=True)
    return 0


SEED_LIMIT = 2**31  # seeds feed generators as seed * 1_000_003 + epoch, which must stay within int64


def _validate(family: str, sweep: Spec, args: argparse.Namespace):
    """Every check that needs no Ray and writes nothing: values, names, paths, data, local resources."""
    from earlyphase.data import load_split
    from earlyphase.imp import check_run
    from earlyphase.tune.connect import check_local_resources
    from earlyphase.tune.engine import Execution

    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0 or args.max_failures < 0 or args.log_every < 0:
        raise SpecError("--cpus-per-trial must be > 0; --gpus-per-trial, --max-failures, --log-every >= 0")
    bad_seeds = [s for s in getattr(sweep, "seeds", ()) if not 0 <= s < SEED_LIMIT]
    if bad_seeds:
        raise SpecError(f"seeds must lie in [0, 2^31), got {bad_seeds}")
    address = args.address or os.environ.get("RAY_ADDRESS")
    storage_path = storage.resolve(args.storage_path)
    if address and not storage.is_uri(storage_path) and not args.shared_storage:
        raise SpecError(
            f"--storage-path {storage_path} is local to this machine, but trials on other nodes must save "
            "their checkpoints there: use s3://..., gs://... or, for a shared file system, --shared-storage"
        )
    if hasattr(sweep, "run"):
        check_run(sweep.run)
    data_dir = storage.resolve(args.data_dir) if args.data_dir else None
    if not address:  # trials run here: the resources and both splits of the data must be here too
        check_local_resources(args.cpus_per_trial, args.gpus_per_trial)
        for dataset in sweep.datasets():
            load_split(dataset, True, data_dir)
            load_split(dataset, False, data_dir)
    name = _experiment_name(family, args, storage_path)
    storage.check_name(name)
    storage.check_writable(storage.join(storage_path, name))
    return Execution(
        storage_path=storage_path,
        name=name,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_failures=args.max_failures,
        log_every=args.log_every,
        data_dir=data_dir,
        resume=args.resume,
    )


def _launch(family: str, runner: str, sweep: Spec, execution, args: argparse.Namespace):
    """Join the cluster (or start the local Ray), check it can hold a trial, then claim the experiment."""
    from earlyphase.tune import experiment
    from earlyphase.tune.connect import check_cluster_resources, connect

    address = args.address or os.environ.get("RAY_ADDRESS")
    connect(address)
    if address:
        check_cluster_resources(execution.cpus_per_trial, execution.gpus_per_trial)
    settings = {
        "family": family,
        "runner": runner,
        "address": address,
        "cpus_per_trial": execution.cpus_per_trial,
        "gpus_per_trial": execution.gpus_per_trial,
        "max_failures": execution.max_failures,
        "log_every": execution.log_every,
        "data_dir": execution.data_dir,
        "shared_storage": args.shared_storage,
    }
    return experiment.claim(execution.experiment_dir, sweep.to_json(), settings, args.resume)
