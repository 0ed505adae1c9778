"""Written by ``python pipelines/refresh_pretrained.py``; do not edit. The SHA-256 of each shipped file the
pretrained loader reads first: each bundle's ``pipeline.json`` (which hashes the rest) and ``record.json``."""

PINNED_SHA256: dict[str, str] = {
    "two_stage/pipeline.json": "250fe11c93b1a609be19694f09ec8d50616d11b91bb055e83ec8dcaff5f4d1a3",
    "direct/pipeline.json": "9dcc148e7626958b367494d1b7b40ddb0719825c970188815bff5abd1ec41a20",
    "record.json": "0c54b8468e471672244a06a810f1f54537e85d14f9408b761a908f2d434b07a4",
}
