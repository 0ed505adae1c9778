#!/usr/bin/env python
"""Two-stage vs direct on the same split and seed, and what the detour costs, recorded in MLflow.

    python pipelines/compare.py [--config-two-stage X.yaml] [--config-direct Y.yaml] [--data-root DIR] [key=value ...]
    python pipelines/compare.py --runs RUN_ID_TWO_STAGE RUN_ID_DIRECT    # compare two finished runs

A parent run tagged `comparison` holds the two routes as child runs (tags pipeline=two_stage / direct)
and logs the accuracy loss with its 95% paired bootstrap CI, the inference-, training-time and size
ratios, a markdown report (also written to <output_dir>/compare-<time>/report.md) and a bar plot.
Logic: attr2gender.run.
"""

import sys
from pathlib import Path

try:
    from attr2gender.run import main_compare
except ModuleNotFoundError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from attr2gender.run import main_compare

if __name__ == "__main__":
    sys.exit(main_compare())
