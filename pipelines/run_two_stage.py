"""The two-stage route (image -> 39 attributes -> Male): train, evaluate, track in MLflow.

    python pipelines/run_two_stage.py [--config two_stage] [--data-root DIR] [key=value ...]

Without --data-root and without data/celeba it makes a synthetic CelebA and runs the smoke preset.
The same as ``attr2gender run two-stage``; ``--help`` lists the options.
"""

import sys

from attr2gender.cli import main_two_stage

if __name__ == "__main__":
    sys.exit(main_two_stage())
