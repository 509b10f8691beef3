#!/bin/sh
# The main job, as `make demo` runs it: predictions, label maps, surface meshes and preview pictures (their 3D view
# drawn by VTK through DISPLAY, else a private Xvfb) for two embedded samples,
# made by `repmode synth` with seeds the models never saw, scored against the samples' ground truth.
#   cells:  a transmitted-light cell field -> nuclei, membranes, nucleoli, mitochondria (fluorescence-style),
#           Pearson r each
#   scroll: a papyrus surface volume (16-bit layers) -> a 2D ink map, F0.5 inside the fragment mask
# The models were trained by repmode itself on other synthetic samples (examples/models/train-*.sh).
#   examples/demo.sh [OUT (build/demo)]     REPMODE=path/to/repmode to use another build
set -eu
HERE=$(dirname "$0")
REPMODE=${REPMODE:-build/bin/repmode}
OUT=${1:-build/demo}
MODELS=$HERE/models
mkdir -p "$OUT"
START=$(date +%s.%N)

# "key" of the JSON object that repmode eval prints
metric() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"; }

echo "== cells: repmode synth cells --seed 2, predicted with $MODELS/cells.safetensors"
"$REPMODE" synth cells --out "$OUT/cells" --seed 2 --size 16,128,128
"$REPMODE" predict --model "$MODELS/cells.safetensors" --task nuclei,membranes,nucleoli,mitochondria \
  --input "$OUT/cells/signal.nrrd" --output "$OUT/cells/prediction.mha" \
  --labels "$OUT/cells/labels.nrrd" --colors "$OUT/cells/labels.ctbl" --surfaces "$OUT/cells/surfaces"
"$REPMODE" render --input "$OUT/cells/signal.nrrd" --labels "$OUT/cells/labels.nrrd" \
  --colors "$OUT/cells/labels.ctbl" --out "$OUT/cells.png"
CELLS=""
for task in nuclei membranes nucleoli mitochondria; do
  r=$("$REPMODE" eval --model "$MODELS/cells.safetensors" --task $task --input "$OUT/cells/signal.nrrd" \
        --target "$OUT/cells/$task.nrrd" 2>/dev/null | metric pearson)
  CELLS="$CELLS  $task $(printf '%.3f' "$r")"
done

echo "== scroll: repmode synth scroll --seed 2, predicted with $MODELS/ink.safetensors"
"$REPMODE" synth scroll --out "$OUT/scroll" --seed 2 --size 16,256,256
"$REPMODE" predict --model "$MODELS/ink.safetensors" --task ink --input "$OUT/scroll/surface_volume" \
  --mask "$OUT/scroll/mask.nrrd" --output "$OUT/scroll/ink.mha" --labels "$OUT/scroll/ink-labels.nrrd" \
  --colors "$OUT/scroll/ink-labels.ctbl"
"$REPMODE" render --input "$OUT/scroll/ink.mha" --labels "$OUT/scroll/ink-labels.nrrd" \
  --colors "$OUT/scroll/ink-labels.ctbl" --out "$OUT/scroll.png"
INK=$("$REPMODE" eval --model "$MODELS/ink.safetensors" --task ink --input "$OUT/scroll/surface_volume" \
        --target "$OUT/scroll/inklabels.nrrd" --mask "$OUT/scroll/mask.nrrd" 2>/dev/null | metric f05)

END=$(date +%s.%N)
echo
echo "== results (ground truth of the samples; models trained on other seeds)"
echo "cells, Pearson r:$CELLS"
echo "scroll, ink F0.5 inside the fragment: $(printf '%.3f' "$INK")"
echo "outputs: $OUT/cells/prediction.mha (one component per task), $OUT/cells/labels.nrrd + labels.ctbl," \
     "$OUT/cells/surfaces/<task>.vtp, $OUT/cells.png"
echo "         $OUT/scroll/ink.mha (ink probability), $OUT/scroll/ink-labels.nrrd + ink-labels.ctbl," \
     "$OUT/scroll.png"
awk -v s="$START" -v e="$END" 'BEGIN { printf "took %.1f s\n", e - s }'
