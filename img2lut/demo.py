"""The built-in demo data: (original, graded) pairs built on first use from photos that ship in wheels.

Sources: the colour photographs bundled with scikit-image, scikit-learn and matplotlib (the ``demo``
extra; see :data:`PHOTOS`), cut into many crops (random position and scale, horizontal flips), plus
synthetic images that cover the whole colour cube (four-colour gradients, colour charts, random patches,
planes through the cube, and blocks of random colours: photos reach only part of the cube, and every LUT
cell should see some data). Two sets (:data:`DEMO_SETS`, ``python -m img2lut.train --demo NAME``):

- ``bw`` (the default): every input graded by one built-in look (``lutkern.looks["bw"]``, the seed's
  black-and-white target) with :func:`lutkern.apply_lut`; the true LUT is saved beside the pairs.
- ``adaptive`` and one set per other grade family of :mod:`img2lut.grades` (``levels``, ``auto_gamma``,
  ``extremes``, ``saturation``, ``auto_tone``, ``levels_gamma``): every input is a mis-shot crop (its
  own exposure, white-balance and haze error) and its target is graded by a rule read off that input
  (``adaptive``: the ``grey_world`` family, levelled by the channel means, then a look whose strength
  follows the scene): one exact LUT per pair, no single LUT for all. The per-pair grades are saved in
  ``grades.json``, so the true LUT of every pair is known.

Validation never shares a source photograph with training: the crops of the validation photos and
their own synthetic images are held out. Layout of the folder::

    inputs/ targets/            training pairs (PNG, 8-bit)
    val-inputs/ val-targets/    validation pairs
    truth.cube                  bw: the LUT that graded every target
    grades.json                 adaptive sets: {pair name: grade}, see img2lut.grades.grade_lut
    demo.json                   how it was built (written last: its presence means complete)

The folder is ``<root>/<name>-v2`` with ``<root>`` = ``$IMG2LUT_DEMO_DIR`` if set, else
``$XDG_CACHE_HOME/img2lut`` (``~/.cache`` when XDG_CACHE_HOME is unset). Everything is deterministic
given :class:`DemoSpec`.
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

from . import grades as grade_rules
from .data import DataError, resize

DEMO_VERSION = "v3"
# Every colour photograph that ships in the demo extra's wheels: name -> (package, loader).
PHOTOS = {
    "astronaut": ("skimage", "astronaut"),
    "chelsea": ("skimage", "chelsea"),
    "coffee": ("skimage", "coffee"),
    "rocket": ("skimage", "rocket"),
    "motorcycle_left": ("skimage", "stereo_motorcycle"),
    "motorcycle_right": ("skimage", "stereo_motorcycle"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
    "grace_hopper": ("matplotlib", "grace_hopper.jpg"),
}
# The two views of the stereo pair are one scene: their crops share a name prefix, so they are one
# photograph for every split by name.
SCENE = {"motorcycle_left": "motorcycle", "motorcycle_right": "motorcycle"}
GRADES = ("global", *grade_rules.FAMILIES)
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
    look: str = "bw"  # the look of a "global" grade
    lut_size: int = 33
    seed: int = 0
    grade: str = "global"  # or a family of img2lut.grades
    train_photos: tuple[str, ...] = ("astronaut", "chelsea", "rocket", "motorcycle_left")
    val_photos: tuple[str, ...] = ("coffee",)


# Photos only: a synthetic chart's statistics say nothing about how photos are mis-shot.
_ADAPTIVE = DemoSpec(grade="grey_world", crops_per_photo=32, val_crops_per_photo=16, synthetic=0,
                     val_synthetic=0,
                     train_photos=("astronaut", "chelsea", "rocket", "motorcycle_left", "motorcycle_right",
                                   "china", "flower"),
                     val_photos=("coffee", "grace_hopper"))
# The built-in sets, each ~200-230 training pairs (a few minutes of the default preset on a 2-core CPU).
DEMO_SETS = {
    "bw": DemoSpec(),
    "adaptive": _ADAPTIVE,
    **{family: dataclasses.replace(_ADAPTIVE, grade=family) for family in grade_rules.FAMILIES[1:]},
}


@dataclass(frozen=True)
class DemoData:
    root: Path
    inputs: Path
    targets: Path
    val_inputs: Path
    val_targets: Path
    truth: Path  # bw: the look's .cube
    grades: Path  # adaptive: grades.json

    def true_luts(self, names: list[str], lut_size: int) -> torch.Tensor | None:
        """``(N,S,S,S,3)`` the true LUT of each named pair of an adaptive set; None for a global one."""
        if not self.grades.is_file():
            return None
        grades = json.loads(self.grades.read_text())
        return torch.stack([grade_rules.grade_lut(grade_rules.Grade.from_dict(grades[n]), lut_size)
                            for n in names])


def default_demo_dir(name: str = "bw") -> Path:
    root = os.environ.get("IMG2LUT_DEMO_DIR")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "img2lut"
    return Path(root) / f"{name}-{DEMO_VERSION}"


def _layout(root: Path) -> DemoData:
    return DemoData(root, root / "inputs", root / "targets", root / "val-inputs", root / "val-targets",
                    root / "truth.cube", root / "grades.json")


def load_photo(name: str) -> torch.Tensor:
    """A photograph of :data:`PHOTOS` as ``(3,H,W)`` float32 in [0,1]."""
    if name not in PHOTOS:
        raise DataError(f"unknown demo photo {name!r}; known: {', '.join(PHOTOS)}")
    package, loader = PHOTOS[name]
    try:
        if package == "skimage":
            from skimage import data as skdata

            pixels = getattr(skdata, loader)()
            if loader == "stereo_motorcycle":  # (left view, right view, disparity)
                pixels = pixels[0] if name.endswith("left") else pixels[1]
        elif package == "sklearn":
            from sklearn.datasets import load_sample_image

            pixels = load_sample_image(loader)
        else:
            import numpy as np
            from matplotlib import cbook
            from PIL import Image

            with Image.open(cbook.get_sample_data(loader, asfileobj=False)) as im:
                pixels = np.asarray(im.convert("RGB"))
    except ImportError as exc:
        raise DataError(f"the demo photo {name!r} ships with {package}: pip install 'lutkern[demo]' "
                        "(or train on your own pairs with --inputs/--targets)") from exc
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


def _write_pairs(inputs: list[torch.Tensor], names: list[str], luts: torch.Tensor, in_dir: Path,
                 out_dir: Path) -> None:
    """Write the inputs and their grades by ``luts`` (one ``(S,S,S,3)`` LUT, or ``(N,S,S,S,3)``)."""
    from lutkern.imageio import write_image

    in_dir.mkdir(parents=True)
    out_dir.mkdir(parents=True)
    batch = _quantize8(torch.stack(inputs))
    graded = _quantize8(lutkern.apply_lut(batch, luts, interpolation="trilinear"))
    for name, x, y in zip(names, batch, graded, strict=True):
        write_image(in_dir / f"{name}.png", x, bit_depth=8)
        write_image(out_dir / f"{name}.png", y, bit_depth=8)


def _sources(photos: tuple[str, ...], crops: int, synthetic: int, spec: DemoSpec, gen: torch.Generator):
    names, images = [], []
    for photo_name in photos:
        photo = load_photo(photo_name)
        offset = sum(crops for other in photos[:photos.index(photo_name)]
                     if SCENE.get(other, other) == SCENE.get(photo_name, photo_name))
        for i in range(crops):
            names.append(f"{SCENE.get(photo_name, photo_name)}-{offset + i:03d}")
            crop = random_crop(photo, spec.image_size, gen)
            images.append(crop if spec.grade == "global" else grade_rules.mis_shoot(crop, gen))
    for i in range(synthetic):
        kind = SYNTHETIC_KINDS[i % len(SYNTHETIC_KINDS)]
        names.append(f"synthetic-{kind}-{i:03d}")
        images.append(synthetic_image(kind, spec.image_size, gen))
    return names, images


def build_demo(root: Path, spec: DemoSpec) -> DemoData:
    """Build the demo into ``root`` (which must not exist) via a temporary sibling folder."""
    if spec.look not in lutkern.looks:
        raise DataError(f"unknown look {spec.look!r}; built-in looks: {', '.join(lutkern.looks)}")
    if spec.grade not in GRADES:
        raise DataError(f"unknown grade {spec.grade!r}; expected one of {', '.join(GRADES)}")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        gen = torch.Generator().manual_seed(spec.seed)
        lut = lutkern.looks[spec.look](size=spec.lut_size)
        layout = _layout(tmp)
        grades: dict[str, dict] = {}
        for photos, crops, synthetic, prefix, in_dir, out_dir in (
            (spec.train_photos, spec.crops_per_photo, spec.synthetic, "", layout.inputs, layout.targets),
            (spec.val_photos, spec.val_crops_per_photo, spec.val_synthetic, "val-", layout.val_inputs,
             layout.val_targets),
        ):
            names, images = _sources(photos, crops, synthetic, spec, gen)
            names = [prefix + n for n in names]
            luts = lut
            if spec.grade != "global":
                per_pair = [grade_rules.grade_of(_quantize8(x), spec.grade) for x in images]
                grades.update({n: g.to_dict() for n, g in zip(names, per_pair, strict=True)})
                luts = torch.stack([grade_rules.grade_lut(g, spec.lut_size) for g in per_pair])
            _write_pairs(images, names, luts, in_dir, out_dir)
        if spec.grade != "global":
            layout.grades.write_text(json.dumps(grades, indent=1) + "\n")
        else:
            lutkern.write_cube(layout.truth, lut, title=f"img2lut demo look {spec.look}")
        info = {"version": DEMO_VERSION, "spec": dataclasses.asdict(spec)}
        (tmp / "demo.json").write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _layout(root)


def ensure_demo(root: str | Path | None = None, spec: DemoSpec | None = None, name: str = "bw") -> DemoData:
    """The folders of demo set ``name`` (or of ``spec``), building them first when ``root`` (default:
    :func:`default_demo_dir`) has no complete demo yet.

    A folder built from a different spec, or one that exists without ``demo.json`` (not ours), is a
    DataError rather than something to overwrite.
    """
    if name not in DEMO_SETS:
        raise DataError(f"unknown demo set {name!r}; built-in sets: {', '.join(DEMO_SETS)}")
    spec = spec or DEMO_SETS[name]
    root = Path(root) if root is not None else default_demo_dir(name)
    marker = root / "demo.json"
    if marker.is_file():
        built = json.loads(marker.read_text()).get("spec")
        if built != json.loads(json.dumps(dataclasses.asdict(spec))):
            raise DataError(f"{root} holds demo data built with other settings; delete it to rebuild")
        return _layout(root)
    if root.exists():
        raise DataError(f"{root} exists but is not a complete demo folder (no demo.json); "
                        "delete it or set IMG2LUT_DEMO_DIR to another folder")
    return build_demo(root, spec)
