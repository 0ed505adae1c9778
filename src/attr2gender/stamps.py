"""The one run stamp: when a run started, and a random suffix so that two runs started in the same second
never share a folder or a name (run folders, ``compare-<stamp>`` folders and MLflow run names)."""

import secrets
import time


def run_stamp() -> str:
    """``<YYYYmmdd-HHMMSS>-<6 random hex digits>``, e.g. ``20260131-142501-9f3a0c``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def stamp_clock(stamp: str | None) -> str:
    """A :func:`run_stamp`'s time of day and what follows it: ``20260131-142501-9f3a0c`` -> ``14:25:01``,
    ``...-9f3a0c-seed2`` -> ``14:25:01 seed2`` (any other stamp as it is; none: the time now). Names in
    MLflow's runs table, which cuts long ones, lead with it."""
    if not stamp:
        return time.strftime("%H:%M:%S")
    parts = stamp.split("-")
    if len(parts) >= 3 and len(parts[0]) == 8 and len(parts[1]) == 6 and (parts[0] + parts[1]).isdigit():
        tail = "-".join(parts[3:])
        return f"{parts[1][:2]}:{parts[1][2:4]}:{parts[1][4:]}" + (f" {tail}" if tail else "")
    return stamp
