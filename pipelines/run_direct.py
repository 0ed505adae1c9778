"""The direct route (image -> Male): train, evaluate, track in MLflow.

    python pipelines/run_direct.py [--config direct] [--data-root DIR] [key=value ...]

Without --data-root and without data/celeba it makes a synthetic CelebA and runs the smoke preset.
The same as ``attr2gender run direct``; ``--help`` lists the options.
"""

import sys

from attr2gender.cli import main_direct

if __name__ == "__main__":
    sys.exit(main_direct())
