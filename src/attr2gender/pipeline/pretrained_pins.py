"""Written by ``python pipelines/refresh_pretrained.py``; do not edit. The SHA-256 of each shipped file the
pretrained loader reads first: each bundle's ``pipeline.json`` (which hashes the rest) and ``record.json``."""

PINNED_SHA256: dict[str, str] = {
    "two_stage/pipeline.json": "1c5f4367f4f2d24906d62a3562fe016f7fb3821f0504a04c6c98dab8fef8a554",
    "direct/pipeline.json": "6cdacfc0d10049943b7725139131becab62a446be97e48d4bd31f5be52aa6952",
    "record.json": "2015679e64dded2920732b9465d262ff8e9efb1a210a799cfe240229eb5ce714",
}
