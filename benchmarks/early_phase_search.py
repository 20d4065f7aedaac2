"""The search for a CPU-scale setting that shows Figure 1's early-phase finding.

docs/cpu_early_phase_search.md records every configuration tried with this driver.

Science core only (no Ray), one thread per process. Two measurements of one configuration, each over
seeds, every finished run appended to ``--out`` as one JSON line (with the configuration):

``imp``: the dense run, an IMP chain per rewind iteration k (levels 1..L, ``--fraction`` per level),
and the baselines (random pruning per layer, random reinitialisation) of the k = 0 chain at the
chosen levels. Each run draws its own data order or replays the dense run's (``--data-order``).

``instability``: train dense to k, then two copies from that full state to the end with different
data orders; the test error barrier along the line between them (all state interpolated, BatchNorm
statistics included), in points (docs/experiments.md B).

``summary`` reprints a results file: per configuration, mean ± std over seeds.

    python benchmarks/early_phase_search.py imp --model resnet8 --lr 0.4 --steps 1200it \\
        --milestones 900it --image-size 14 --train-subset 20000 --k 0 100 --levels 5 \\
        --fraction 0.5 --baseline-levels 3 5 --seeds 0 1 2 --out search.jsonl
    python benchmarks/early_phase_search.py summary --out search.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from earlyphase.connectivity import copy_data_seeds, error_barrier, train_copies
from earlyphase.imp import IMP
from earlyphase.interventions import BASELINES
from earlyphase.specs import DataSpec, ModelSpec, PruningSpec, RunSpec, TrainingSpec

Emit = Callable[[dict], None]


def run_spec(args: argparse.Namespace) -> RunSpec:
    """The configuration the command line describes; evaluated only at the end of training."""
    return RunSpec(
        data=DataSpec(
            "fashion_mnist",
            batch_size=args.batch_size,
            image_size=args.image_size,
            train_subset=args.train_subset,
        ),
        model=ModelSpec(args.model, args.width),
        training=TrainingSpec(
            steps=args.steps,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            milestones=tuple(args.milestones),
            warmup=args.warmup,
            eval_every=args.steps,
            data_order=args.data_order,
        ),
        pruning=PruningSpec(fraction=args.fraction),
    )


def imp_runs(spec: RunSpec, seed: int, args: argparse.Namespace, emit: Emit) -> None:
    imp = IMP(spec, seed, device="cpu")
    ks = sorted(set(args.k))
    dense = imp.dense(ks)
    emit({"kind": "dense", "seed": seed, "k": None, **dense.metrics})
    for k in ks:
        previous = dense
        for level in range(1, args.levels + 1):
            previous = imp.level(level, k, dense.rewind_states[k], previous)
            emit({"kind": "imp", "seed": seed, "k": k, **previous.metrics})
            if k == ks[0] and level in args.baseline_levels:
                for name in BASELINES:
                    run = imp.branch(name, level, k, dense.rewind_states, previous.mask)
                    emit({"kind": name, "seed": seed, "k": k, **run.metrics})


def instability_runs(spec: RunSpec, seed: int, args: argparse.Namespace, emit: Emit) -> None:
    imp = IMP(spec, seed, device="cpu")
    dense = imp.dense(args.k)
    for k in sorted(set(args.k)):
        began = time.perf_counter()
        a, b = train_copies(spec, dense.rewind_states[k], k, seed, copy_data_seeds(seed))
        path = error_barrier(imp.new_model(), a, b, imp.data, points=5, train_examples=0)
        emit(
            {
                "kind": "instability",
                "seed": seed,
                "k": k,
                "test_accuracy_a": 1 - path.test_error[0],
                "test_accuracy_b": 1 - path.test_error[-1],
                "barrier": path.test_barrier,
                "wall_time_s": time.perf_counter() - began,
            }
        )


def mean_std(values: list[float]) -> str:
    std = f"{100 * statistics.stdev(values):.2f}" if len(values) > 1 else "—"
    return f"{100 * statistics.mean(values):.2f} ± {std} (n={len(values)})"


def summarise(rows: list[dict]) -> str:
    """Dense, then per (level, kind, k) accuracy over seeds; or the barrier per k."""
    groups = defaultdict(list)
    for row in rows:
        if row["kind"] == "instability":
            groups[(0, "barrier", row["k"], 1.0)].append(row["barrier"])
        else:
            groups[(row["level"], row["kind"], row["k"], row["density"])].append(row["test_accuracy"])
    return "\n".join(
        f"  {kind:14} k={k!s:5} level {level} density {density:6.2%}: {mean_std(values)}"
        for (level, kind, k, density), values in sorted(
            groups.items(), key=lambda g: (g[0][0], g[0][1], str(g[0][2]))
        )
    )


def summarise_file(path: str) -> str:
    """Every configuration in a results file, its seeds pooled."""
    by_config = defaultdict(list)
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            config = {k: v for k, v in row.pop("config").items() if k != "seeds"}
            by_config[json.dumps(config)].append(row)
    return "\n\n".join(f"{config}\n{summarise(rows)}" for config, rows in by_config.items())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("measure", choices=["imp", "instability", "summary"])
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.4)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--steps", default="1200it")
    parser.add_argument("--milestones", nargs="*", default=["900it"])
    parser.add_argument("--warmup", default="0it")
    parser.add_argument("--image-size", type=int, default=14)
    parser.add_argument("--train-subset", type=int, default=20_000)
    parser.add_argument("--data-order", choices=["fresh", "replay"], default="fresh")
    parser.add_argument(
        "--fraction", type=float, default=0.5, help="of the surviving weights pruned per level"
    )
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--k", type=int, nargs="+", default=[0, 100], help="rewind iterations")
    parser.add_argument("--baseline-levels", type=int, nargs="*", default=[], help="levels with baselines")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="early_phase_search.jsonl", help="JSON lines appended here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.measure == "summary":
        print(summarise_file(args.out))
        return
    torch.set_num_threads(1)
    spec = run_spec(args)
    config = {key: value for key, value in vars(args).items() if key != "out"}
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        with open(args.out, "a") as f:
            f.write(json.dumps({"config": config, **row}) + "\n")
        print(
            " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
            flush=True,
        )

    measure = imp_runs if args.measure == "imp" else instability_runs
    for seed in args.seeds:
        measure(spec, seed, args, emit)
    print(json.dumps(config))
    print(summarise(rows), flush=True)


if __name__ == "__main__":
    main()
