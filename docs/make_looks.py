"""Render the before/after pictures of docs/looks.md: each built-in look applied to public-domain photos.

    python docs/make_looks.py            # needs the demo extra (scikit-image) for the photos

Writes ``docs/images/look_<name>.jpg``: one row per photo (astronaut, coffee, chelsea from
``skimage.data``, centre-cropped to squares), the original on the left and the graded photo on the
right, graded by ``lutkern.apply_lut`` with the look's 33-point LUT (trilinear), as ``python -m
lutkern.apply`` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lutkern import apply_lut, looks

OUT = Path(__file__).resolve().parent / "images"
PHOTOS = ("astronaut", "coffee", "chelsea")
SIZE = 240
GAP = 4


def photo(name: str) -> torch.Tensor:
    """``skimage.data.<name>()`` centre-cropped to a square, ``(3,SIZE,SIZE)`` float in [0, 1]."""
    import skimage.data

    im = Image.fromarray(getattr(skimage.data, name)())
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    im = im.crop((left, top, left + side, top + side)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)


def before_after(images: list[torch.Tensor], lut: torch.Tensor) -> Image.Image:
    rows = []
    for img in images:
        graded = apply_lut(img, lut, backend="torch")
        rows += [
            torch.cat([img, torch.ones(3, SIZE, GAP), graded], dim=2),
            torch.ones(3, GAP, 2 * SIZE + GAP),
        ]
    sheet = torch.cat(rows[:-1], dim=1)
    codes = (sheet.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(codes)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    images = [photo(name) for name in PHOTOS]
    for name, look in looks.items():
        path = OUT / f"look_{name}.jpg"
        before_after(images, look(33)).save(path, quality=88)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
