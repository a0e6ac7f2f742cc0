#!/usr/bin/env bash
# Stage of bench/gpu_check.sh: python -m img2lut.train under torchrun on the GPU (NCCL, one process), with
# bf16 autocast, channels-last and SyncBatchNorm, on eight generated 64x64 pairs; then a resume to epoch 2.
# Checks that the NCCL path runs and that the checkpoint loads into a plain model.
set -euo pipefail
PY="${PYTHON:-python}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$PY" - "$WORK" <<'PY'
import sys
from pathlib import Path

import torch
from PIL import Image

import lutkern

root, look, g = Path(sys.argv[1]), lutkern.looks["bw"](size=9), torch.Generator().manual_seed(0)
for folder in ("inputs", "targets"):
    (root / folder).mkdir()
for i in range(8):
    img = torch.rand(3, 8, 8, generator=g).repeat_interleave(8, 1).repeat_interleave(8, 2)
    for folder, pixels in (("inputs", img), ("targets", lutkern.apply_lut(img, look, backend="torch"))):
        codes = (pixels * 255).round().permute(1, 2, 0).to(torch.uint8).numpy()
        Image.fromarray(codes, "RGB").save(root / folder / f"p{i}.png")
PY
run() { "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m img2lut.train "$@"; }
run --device cuda --inputs "$WORK/inputs" --targets "$WORK/targets" --out "$WORK/runs" --image-size 64 \
    --cnn-size 32 --lut-size 9 --batch-size 4 --epochs 1 --scheduler plateau \
    --amp bf16 --channels-last --sync-bn
run --device cuda --resume "$WORK/runs/models/pairs/checkpoint.pt" --epochs 2
"$PY" -c "
import sys
from img2lut import checkpoint
p = checkpoint.load_checkpoint(sys.argv[1])
checkpoint.model_from_checkpoint(p)
assert p['state']['epoch'] == 2, p['state']['epoch']
print('torchrun on CUDA: trained, resumed to epoch 2, checkpoint loads into a plain model')
" "$WORK/runs/models/pairs/checkpoint.pt"
