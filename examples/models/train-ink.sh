#!/bin/sh
# Trains examples/models/ink.safetensors, the ink model of `make demo`, exactly as it was committed:
#   examples/models/train-ink.sh [REPMODE] [WORKDIR]
# Trained on `repmode synth scroll --seed 1`, validated (best model and F0.5 threshold) on --seed 3; the demo predicts
# --seed 2. Percentile normalization, because fragments differ in how much air surrounds them; bucketed sampling,
# because ink covers a few percent of a fragment.
# Bit for bit with the OpenBLAS kernels the committed model was made with (OPENBLAS_CORETYPE=Haswell, as this
# project's machines set it); other kernels round differently and give a model of the same quality.
set -eu
REPMODE=${1:-build/bin/repmode}
WORK=${2:-build/train-ink}
HERE=$(dirname "$0")
mkdir -p "$WORK"
"$REPMODE" synth scroll --out "$WORK/train" --seed 1 --size 16,256,256
"$REPMODE" synth scroll --out "$WORK/val" --seed 3 --size 16,256,256
"$REPMODE" train --config "$HERE/../configs/scroll-small.json" --data "$WORK/train/data.csv" --val "$WORK/val/data.csv" \
  --val-every 50 --tune-threshold --sampling buckets --out "$HERE/ink.safetensors" \
  --steps 300 --batch 4 --lr 2e-3 --seed 1 --threads 2 --log "$WORK/log.jsonl" --checkpoint "$WORK/ink.ckpt"
