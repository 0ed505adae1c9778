"""Written by ``python pipelines/refresh_pretrained.py``; do not edit. The SHA-256 of each shipped file the
pretrained loader reads first: each bundle's ``pipeline.json`` (which hashes the rest) and ``record.json``."""

PINNED_SHA256: dict[str, str] = {
    "two_stage/pipeline.json": "dd3c4ad5885ae8bde64aa0edc996c8869e1afa6616c9ce989187de091d4680a9",
    "direct/pipeline.json": "9dd5c4523d609d1e49fc35fa132ca765bbf8581a1f491e90c8bf1799a7cd9dcb",
    "record.json": "43ef6805fa6980ddc0b0084a137d0bf11cd47cfde172cc6209795647034b8371",
}
