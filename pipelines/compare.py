"""Two-stage vs direct on the same split and seed, and what the detour costs, recorded in MLflow.

    python pipelines/compare.py [--config-two-stage X] [--config-direct Y] [--data-root DIR] [--corruptions] [key=value ...]
    python pipelines/compare.py --runs RUN_ID_TWO_STAGE RUN_ID_DIRECT    # compare two finished runs

A parent run tagged `comparison` holds the two routes as child runs (tags pipeline=two_stage / direct) and
logs the accuracy loss with its 95% paired bootstrap CI, the worst groups, the inference-, training-time and
size ratios, a markdown report (also written to <output_dir>/compare-<time>/report.md) and plots.
The same as ``attr2gender run compare``; ``--help`` lists the options.
"""

import sys

from attr2gender.cli import main_compare

if __name__ == "__main__":
    sys.exit(main_compare())
