#!/usr/bin/env bash
# Stage of bench/gpu_check.sh: training images/s of img2lut against the seed notebook's step on one GPU,
# B=64, 256x256, S=33 (both settings of bench/train_step.py): fp32 eager first, then bf16 + channels-last.
# torch.compile is left out here: its compilation alone can take longer than this stage's limit.
set -euo pipefail
PY="${PYTHON:-python}"
"$PY" bench/train_step.py --device cuda --batch 64 --image-size 256 --lut-size 33 --repeats 10
"$PY" bench/train_step.py --device cuda --batch 64 --image-size 256 --lut-size 33 --repeats 10 \
    --amp bf16 --channels-last
