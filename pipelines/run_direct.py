#!/usr/bin/env python
"""Train, evaluate and track the direct pipeline (image -> Male).

    python pipelines/run_direct.py [--config configs/direct.yaml] [--data-root DIR] [key=value ...]

Without --data-root and without data/celeba it makes a synthetic CelebA and runs configs/smoke.yaml
(with task=direct, loss=cross_entropy). Ends by printing the run folder, the bundle, the MLflow run and
the `mlflow ui` line. Logic: attr2gender.run.
"""

import sys
from pathlib import Path

try:
    from attr2gender.run import main_direct
except ModuleNotFoundError:  # not installed: use the checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from attr2gender.run import main_direct

if __name__ == "__main__":
    sys.exit(main_direct())
