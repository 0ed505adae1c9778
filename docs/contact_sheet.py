"""Writes docs/contact_sheet.png, the README's picture of what ``predict(align="auto")`` does, from synthetic
faces (no real person's photo ships with this project): faces drawn by attr2gender's synthetic CelebA,
pasted into larger photos at random positions, sizes and tilts, some with a second face, then run through
``attr2gender align`` exactly as a user's folder would be.

    python docs/contact_sheet.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from attr2gender.cli import main as cli_main
from attr2gender.data.composites import make_composites
from attr2gender.data.synth import make_synthetic_celeba

HERE = Path(__file__).resolve().parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_celeba(Path(tmp) / "celeba", n=40, seed=3, image_size=160, progress=False)
        crops = sorted((root / "img_align_celeba").glob("*.jpg"))
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for k, composite in enumerate(
            make_composites(crops, 12, seed=5, canvas_factor=(1.6, 2.6), second_face=0.4)
        ):
            composite.image.save(photos / f"photo_{k:02d}.jpg", quality=92)
        out = Path(tmp) / "aligned"
        code = cli_main(["align", str(photos), str(out), "--quiet"])
        (out / "contact_sheet.png").replace(HERE / "contact_sheet.png")
    print(f"wrote {HERE / 'contact_sheet.png'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
