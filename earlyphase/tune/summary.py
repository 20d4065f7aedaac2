"""The table a sweep prints when it ends: test accuracy vs density per rewind iteration."""

from __future__ import annotations

import pandas as pd

from earlyphase.analysis.tables import imp_curves, markdown_table


def print_summary(table: pd.DataFrame) -> None:
    seeds = table.seed.nunique()
    print(f"\nTest accuracy (%) by density, mean ± std over {seeds} seed(s):\n")
    print(markdown_table(imp_curves(table)), flush=True)
