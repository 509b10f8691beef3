#!/bin/sh
# repmode's main path under valgrind's memcheck: one training step of a small model, then a prediction with it
# (load, deploy form, sliding window, label map). Any invalid read or write, use of uninitialized memory or leak
# fails it. Run on the normal build: valgrind emulates AVX2 but not AVX-512, so the hot loops' AVX2 clones run.
# The data are made outside valgrind, which would only slow them down.
#   valgrind.sh REPMODE SUPPRESSIONS WORKDIR
set -eu
REPMODE=$1
SUPPRESSIONS=$2
DIR=$3
rm -rf "$DIR"
mkdir -p "$DIR"
"$REPMODE" synth cells --out "$DIR" --seed 3 --size 8,24,24 >/dev/null
head -n 2 "$DIR/data.csv" >"$DIR/nuclei.csv" # the header and the nuclei row
echo '{"base_channels": 2, "levels": 1, "patch": [8, 16, 16], "tasks": [{"name": "nuclei"}]}' >"$DIR/config.json"

memcheck() {
  valgrind -q --error-exitcode=1 --leak-check=full --suppressions="$SUPPRESSIONS" "$REPMODE" "$@" --threads 2
}
memcheck train --config "$DIR/config.json" --data "$DIR/nuclei.csv" --out "$DIR/model.safetensors" --steps 1 \
  --batch 1
memcheck predict --model "$DIR/model.safetensors" --task nuclei --input "$DIR/signal.nrrd" \
  --output "$DIR/nuclei-predicted.nrrd" --labels "$DIR/nuclei-labels.nrrd"
