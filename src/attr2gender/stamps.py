"""The one run stamp: when a run started, and a random suffix so that two runs started in the same second
never share a folder or a name (run folders, ``compare-<stamp>`` folders and MLflow run names)."""

import secrets
import time


def run_stamp() -> str:
    """``<YYYYmmdd-HHMMSS>-<6 random hex digits>``, e.g. ``20260131-142501-9f3a0c``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
