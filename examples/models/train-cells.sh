#!/bin/sh
# Trains examples/models/cells.safetensors, the cell model of `make demo`, exactly as it was committed:
#   examples/models/train-cells.sh [REPMODE] [WORKDIR]
# The training samples are `repmode synth cells --seed 1` and `--seed 3` (16 x 128 x 128, some 18 cells each:
# fewer cells generalised worse); the demo predicts another (--seed 2).
# Bit for bit with the OpenBLAS kernels the committed model was made with (OPENBLAS_CORETYPE=Haswell, as this
# project's machines set it); other kernels round differently and give a model of the same quality.
set -eu
REPMODE=${1:-build/bin/repmode}
WORK=${2:-build/train-cells}
HERE=$(dirname "$0")
mkdir -p "$WORK"
"$REPMODE" synth cells --out "$WORK/seed1" --seed 1 --size 16,128,128
"$REPMODE" synth cells --out "$WORK/seed3" --seed 3 --size 16,128,128
# one CSV over both samples: their rows with the folder put in front of the file names
{ echo "signal,target,task"
  for s in seed1 seed3; do tail -n +2 "$WORK/$s/data.csv" | sed "s#^\([^,]*\),\([^,]*\),#$s/\1,$s/\2,#"; done
} > "$WORK/train.csv"
"$REPMODE" train --config "$HERE/../configs/cells-small.json" --data "$WORK/train.csv" \
  --out "$HERE/cells.safetensors" --steps 900 --warmup 20 --batch 4 --lr 2e-3 --seed 1 --threads 2 \
  --log "$WORK/log.jsonl" --checkpoint "$WORK/cells.ckpt"
