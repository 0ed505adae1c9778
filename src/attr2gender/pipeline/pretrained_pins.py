"""Written by ``python pipelines/refresh_pretrained.py``; do not edit. The SHA-256 of each shipped file the
pretrained loader reads first: each bundle's ``pipeline.json`` (which hashes the rest) and ``record.json``."""

PINNED_SHA256: dict[str, str] = {}
