"""The built-in demo data: (original, graded) pairs built on first use from photos that ship in a wheel.

Sources: the public-domain colour photographs bundled with scikit-image (the ``demo`` extra), cut into
many crops (random position and scale, horizontal flips), plus synthetic images that cover the whole
colour cube (four-colour gradients, colour charts, random patches, planes through the cube, and blocks
of random colours: photos reach only part of the cube, and every LUT cell should see some data). Every input
is graded by a built-in look (``lutkern.looks["bw"]``, the seed's black-and-white target) with
:func:`lutkern.apply_lut`, and the true LUT is saved beside the pairs, so what a model learns can be
compared with the truth, not only its images.

Validation never shares a source photograph with training: the crops of one photo (``coffee``) and
their own synthetic images are held out. Layout of the folder::

    inputs/ targets/            training pairs (PNG, 8-bit)
    val-inputs/ val-targets/    validation pairs
    truth.cube                  the LUT that graded every target
    demo.json                   how it was built (written last: its presence means complete)

The folder is ``$IMG2LUT_DEMO_DIR`` if set, else ``$XDG_CACHE_HOME/img2lut/demo-v1`` (``~/.cache``
when XDG_CACHE_HOME is unset). Everything is deterministic given :class:`DemoSpec`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

import lutkern

from .data import DataError, resize

DEMO_VERSION = "demo-v1"
TRAIN_PHOTOS = ("astronaut", "chelsea", "rocket", "stereo_motorcycle")
VAL_PHOTOS = ("coffee",)
SYNTHETIC_KINDS = ("gradient", "chart", "patches", "plane", "noise")
NOISE_BLOCK = 4  # pixels per side of one random colour in a "noise" image
# Crops cover 35-100% of the photo's short side: close-ups and wide views.
MIN_CROP_FRACTION = 0.35


@dataclass(frozen=True)
class DemoSpec:
    """What to build. The defaults are the demo; tests use tiny variants."""

    image_size: int = 256
    crops_per_photo: int = 40  # per training photo
    val_crops_per_photo: int = 24
    synthetic: int = 64
    val_synthetic: int = 8
    look: str = "bw"
    lut_size: int = 33
    seed: int = 0


@dataclass(frozen=True)
class DemoData:
    root: Path
    inputs: Path
    targets: Path
    val_inputs: Path
    val_targets: Path
    truth: Path


def default_demo_dir() -> Path:
    if os.environ.get("IMG2LUT_DEMO_DIR"):
        return Path(os.environ["IMG2LUT_DEMO_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "img2lut" / DEMO_VERSION


def _layout(root: Path) -> DemoData:
    return DemoData(root, root / "inputs", root / "targets", root / "val-inputs", root / "val-targets",
                    root / "truth.cube")


def _photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo as ``(3,H,W)`` float32 in [0,1]."""
    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise DataError("the demo data needs scikit-image: pip install 'lutkern[demo]' "
                        "(or train on your own pairs with --inputs/--targets)") from exc
    pixels = getattr(skdata, name)()
    if name == "stereo_motorcycle":
        pixels = pixels[0]  # (left view, right view, disparity): one view
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255


def _uniform(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen)


def _randint(gen: torch.Generator, low: int, high: int) -> int:
    """An int in [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=gen))


def random_crop(photo: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """A square crop of ``photo`` ``(3,H,W)`` at random scale and position, maybe mirrored, resized."""
    _, h, w = photo.shape
    side = max(2, int(min(h, w) * (MIN_CROP_FRACTION + (1 - MIN_CROP_FRACTION) * float(_uniform(gen, 1)))))
    top, left = _randint(gen, 0, h - side), _randint(gen, 0, w - side)
    crop = photo[:, top:top + side, left:left + side]
    if float(_uniform(gen, 1)) < 0.5:
        crop = crop.flip(-1)
    return resize(crop, size)


def synthetic_image(kind: str, size: int, gen: torch.Generator) -> torch.Tensor:
    """A ``(3,size,size)`` image whose colours are spread over the RGB cube."""
    t = torch.linspace(0, 1, size)
    if kind == "gradient":  # bilinear blend of four random corner colours
        c = _uniform(gen, 2, 2, 3)
        y, x = t.view(-1, 1, 1), t.view(1, -1, 1)
        img = (1 - y) * ((1 - x) * c[0, 0] + x * c[0, 1]) + y * ((1 - x) * c[1, 0] + x * c[1, 1])
        return img.permute(2, 0, 1).contiguous()
    if kind == "chart":  # a k x k colour checker of random patches
        k = _randint(gen, 4, 10)
        cells = _uniform(gen, 3, k, k)
        idx = (t * k).long().clamp(max=k - 1)
        return cells[:, idx][:, :, idx]
    if kind == "patches":  # random rectangles on a random background
        img = _uniform(gen, 3, 1, 1).expand(3, size, size).clone()
        for _ in range(40):
            y0, x0 = _randint(gen, 0, size - 2), _randint(gen, 0, size - 2)
            y1, x1 = _randint(gen, y0 + 1, size), _randint(gen, x0 + 1, size)
            img[:, y0:y1, x0:x1] = _uniform(gen, 3, 1, 1)
        return img
    if kind == "plane":  # two channels sweep 0..1, the third is constant: a slice through the cube
        axes = torch.randperm(3, generator=gen).tolist()
        img = torch.empty(3, size, size)
        img[axes[0]] = t.view(1, -1)
        img[axes[1]] = t.view(-1, 1)
        img[axes[2]] = float(_uniform(gen, 1))
        return img
    if kind == "noise":  # thousands of colours drawn uniformly from the cube, in small blocks
        cells = _uniform(gen, 3, -(-size // NOISE_BLOCK), -(-size // NOISE_BLOCK))
        return cells.repeat_interleave(NOISE_BLOCK, 1).repeat_interleave(NOISE_BLOCK, 2)[:, :size, :size]
    raise ValueError(f"unknown synthetic image kind {kind!r}, expected one of {SYNTHETIC_KINDS}")


def _quantize8(img: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit values a PNG stores, so the saved input is exactly what was graded."""
    return (img.clamp(0, 1) * 255).round() / 255


def _write_pairs(inputs: list[torch.Tensor], names: list[str], lut: torch.Tensor, in_dir: Path,
                 out_dir: Path) -> None:
    from lutkern.imageio import write_image

    in_dir.mkdir(parents=True)
    out_dir.mkdir(parents=True)
    batch = _quantize8(torch.stack(inputs))
    graded = _quantize8(lutkern.apply_lut(batch, lut, interpolation="trilinear"))
    for name, x, y in zip(names, batch, graded, strict=True):
        write_image(in_dir / f"{name}.png", x, bit_depth=8)
        write_image(out_dir / f"{name}.png", y, bit_depth=8)


def _sources(photos: tuple[str, ...], crops: int, synthetic: int, spec: DemoSpec, gen: torch.Generator):
    names, images = [], []
    for photo_name in photos:
        photo = _photo(photo_name)
        for i in range(crops):
            names.append(f"{photo_name}-{i:03d}")
            images.append(random_crop(photo, spec.image_size, gen))
    for i in range(synthetic):
        kind = SYNTHETIC_KINDS[i % len(SYNTHETIC_KINDS)]
        names.append(f"synthetic-{kind}-{i:03d}")
        images.append(synthetic_image(kind, spec.image_size, gen))
    return names, images


def build_demo(root: Path, spec: DemoSpec) -> DemoData:
    """Build the demo into ``root`` (which must not exist) via a temporary sibling folder."""
    if spec.look not in lutkern.looks:
        raise DataError(f"unknown look {spec.look!r}; built-in looks: {', '.join(lutkern.looks)}")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        gen = torch.Generator().manual_seed(spec.seed)
        lut = lutkern.looks[spec.look](size=spec.lut_size)
        layout = _layout(tmp)
        names, images = _sources(TRAIN_PHOTOS, spec.crops_per_photo, spec.synthetic, spec, gen)
        _write_pairs(images, names, lut, layout.inputs, layout.targets)
        names, images = _sources(VAL_PHOTOS, spec.val_crops_per_photo, spec.val_synthetic, spec, gen)
        _write_pairs(images, [f"val-{n}" for n in names], lut, layout.val_inputs, layout.val_targets)
        lutkern.write_cube(layout.truth, lut, title=f"img2lut demo look {spec.look}")
        info = {"version": DEMO_VERSION, "spec": dataclasses.asdict(spec),
                "train_photos": TRAIN_PHOTOS, "val_photos": VAL_PHOTOS}
        (tmp / "demo.json").write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _layout(root)


def ensure_demo(root: str | Path | None = None, spec: DemoSpec | None = None) -> DemoData:
    """The demo folders, building them first when ``root`` has no complete demo yet.

    A folder built from a different spec, or one that exists without ``demo.json`` (not ours), is a
    DataError rather than something to overwrite.
    """
    spec = spec or DemoSpec()
    root = Path(root) if root is not None else default_demo_dir()
    marker = root / "demo.json"
    if marker.is_file():
        built = json.loads(marker.read_text()).get("spec")
        if built != dataclasses.asdict(spec):
            raise DataError(f"{root} holds demo data built with other settings; delete it to rebuild")
        return _layout(root)
    if root.exists():
        raise DataError(f"{root} exists but is not a complete demo folder (no demo.json); "
                        "delete it or set IMG2LUT_DEMO_DIR to another folder")
    return build_demo(root, spec)
