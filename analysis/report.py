"""Figures, tables and a summary of one experiment: python analysis/report.py <experiment dir> [--out DIR]."""

import sys

from earlyphase.analysis.report import main

if __name__ == "__main__":
    sys.exit(main())
