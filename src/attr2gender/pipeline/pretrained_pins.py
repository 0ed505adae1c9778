"""Written by ``python pipelines/refresh_pretrained.py``; do not edit. The SHA-256 of each shipped file the
pretrained loader reads first: each bundle's ``pipeline.json`` (which hashes the rest) and ``record.json``."""

PINNED_SHA256: dict[str, str] = {
    "two_stage/pipeline.json": "740f0873167b2ffcbf477aec32b58003fa9e1840c0b38fb6803d6f2bf3b5ebc8",
    "direct/pipeline.json": "1df0b8fc92646c1403319f06213e7f2cdf59e8c31ff17360bf635ca5aad32e33",
    "record.json": "b1667146832cb1865acb027fc942b7468c6283153f5e8b7492db5be535328b6f",
}
