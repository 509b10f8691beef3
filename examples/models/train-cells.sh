#!/bin/sh
# Trains examples/models/cells.safetensors, the cell model of `make demo`, exactly as it was committed:
#   examples/models/train-cells.sh [REPMODE] [WORKDIR]
# The training samples are `repmode synth cells --seed 1` and `--seed 3`; the demo predicts another (--seed 2).
set -eu
REPMODE=${1:-build/bin/repmode}
WORK=${2:-build/train-cells}
HERE=$(dirname "$0")
mkdir -p "$WORK"
"$REPMODE" synth cells --out "$WORK/seed1" --seed 1 --size 16,64,64
"$REPMODE" synth cells --out "$WORK/seed3" --seed 3 --size 16,64,64
# one CSV over both samples: their rows with the folder put in front of the file names
{ echo "signal,target,task"
  for s in seed1 seed3; do tail -n +2 "$WORK/$s/data.csv" | sed "s#^\([^,]*\),\([^,]*\),#$s/\1,$s/\2,#"; done
} > "$WORK/train.csv"
"$REPMODE" train --config "$HERE/../configs/cells-small.json" --data "$WORK/train.csv" \
  --out "$HERE/cells.safetensors" --steps 600 --warmup 20 --batch 4 --lr 2e-3 --seed 1 --threads 2 \
  --log "$WORK/log.jsonl" --checkpoint "$WORK/cells.ckpt"
