"""Two-stage vs direct on the same split and seed, and what the detour costs, recorded in MLflow.

    python pipelines/compare.py [--config-two-stage X] [--config-direct Y] [--data-root DIR] [--corruptions] [key=value ...]
    python pipelines/compare.py --runs RUN_ID_TWO_STAGE RUN_ID_DIRECT    # compare two finished runs
    python pipelines/compare.py [key=value ...] --seeds 0 1 2            # one comparison per seed

A parent run tagged `comparison` holds the two routes as child runs (tags pipeline=two_stage / direct) and
logs the accuracy loss with its 95% paired bootstrap CI, the worst groups, the inference-, training-time and
size ratios, a markdown report (also written to <output_dir>/compare-<time>/report.md), plots, and
report.html: one self-contained page (the report, its plots and each route's reports and plots, embedded)
that MLflow shows inline.

With --seeds, each seed changes the split (split=auto becomes identity), the initialisation and the data
order: a parent run tagged `comparison=seeds` holds one comparison run per seed (tag `seed`), each with its
two routes, and logs each route's accuracy and the loss as mean ± std across seeds (seeds_*), whether the
loss has the same sign in every seed (tag seeds_sign_stable), seeds.md, seeds.json and report.html (in
<output_dir>/compare-seeds-<time>/; each seed's comparison in seed-<N>/).
The same as ``attr2gender run compare``; ``--help`` lists the options.
"""

import sys

from attr2gender.cli import main_compare

if __name__ == "__main__":
    sys.exit(main_compare())
