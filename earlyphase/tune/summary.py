"""What a sweep prints when it ends: accuracy vs density per line, and where everything is."""

from __future__ import annotations

import pandas as pd

from earlyphase.analysis.tables import imp_curves, markdown_table
from earlyphase.tune import storage


def print_summary(table: pd.DataFrame, experiment_dir: str) -> None:
    seeds = table.seed.nunique()
    print(f"\nTest accuracy (%) by density, mean ± std over {seeds} seed(s):\n")
    print(markdown_table(imp_curves(table)))
    print(f"\n[earlyphase] results:     {storage.join(experiment_dir, 'results.csv')}")
    print(f"[earlyphase] tensorboard: tensorboard --logdir {experiment_dir}")
    print(f"[earlyphase] report:      python analysis/report.py {experiment_dir}", flush=True)
