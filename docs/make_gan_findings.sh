#!/bin/sh
# docs/gan.md's figures on the shipped world_generator, in one command (two lanes in parallel):
#
#     sh docs/make_gan_findings.sh OUT [PYTHON]      # OUT: a scratch folder for the runs and logs
#
# 1. dissect 2,000 samples (z seed 0) at relu1-relu4, each unit's top 1%, p-values (OUT/d2000);
# lane A: 2. the removal finding per case (docs/make_gan_removal.py: IoU, IQR, ACE and specific-ACE
#            rankings, top 20 units off over 1,000 samples of seed 1, 20 random units;
#            docs/gan_removal_grid.png);
# lane B: 3. the paint page's table and screenshot (docs/make_paint_figures.py, relu2 and relu3;
#            docs/paint.png); 4. artifact units at relu2 (`unitscope gan --stages artifacts`, 150
#            samples; docs/gan_artifacts.png); 5. benchmarks/bench_gan.py (1,000 samples each).
# Each step logs to OUT/<step>.log with its wall and CPU time (/usr/bin/time). One torch thread each.
set -eu
OUT=${1:?usage: sh docs/make_gan_findings.sh OUT [PYTHON]}
PY=${2:-python}
DOCS=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$DOCS")
CASES=${CASES:-relu1:tree,relu2:tree,relu2:sky,relu1:sky}  # the pilot: CASES=relu1:tree,... SAMPLES=300 RANKINGS=iou,iqr
SAMPLES=${SAMPLES:-1000}
RANKINGS=${RANKINGS:-iou,iqr,ace,sace}
GRID=${GRID:-relu1:tree:iou}
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
cd "$ROOT"
T="/usr/bin/time -f %e_s_wall_%U_s_user_%S_s_system"
uptime > "$OUT/load.log"

$T "$PY" -m unitscope dissect --model world_generator --segmenter world_segmenter --samples 2000 \
    --quantile 0.01 --layers relu1,relu2,relu3,relu4 --out "$OUT/d2000" --no-report --topk 4 \
    > "$OUT/dissect.log" 2>&1

(
    $T "$PY" docs/make_gan_removal.py "$OUT/d2000" --cases "$CASES" --rankings "$RANKINGS" --samples "$SAMPLES" \
        --k 20 --grid "$GRID" --grid-png "$DOCS/gan_removal_grid.png" --json "$OUT/removal.json" \
        > "$OUT/removal.log" 2>&1
) &
A=$!
(
    $T "$PY" docs/make_paint_figures.py "$OUT/d2000" --screenshot "$DOCS/paint.png" --shot relu2:snow:2 \
        > "$OUT/paint.log" 2>&1
    $T "$PY" -m unitscope gan "$OUT/d2000" --layer relu2 --concept sky --stages artifacts --artifact-samples 150 \
        --threads 1 --no-report > "$OUT/artifacts.log" 2>&1
    cp "$OUT/d2000/gan/relu2/artifacts.png" "$DOCS/gan_artifacts.png"
    if [ "${BENCH:-1}" = 1 ]; then  # BENCH=0 skips it (the same architecture times the same)
        $T "$PY" benchmarks/bench_gan.py --samples 1000 --removal-samples 1000 > "$OUT/bench.log" 2>&1
    fi
) &
B=$!
wait $A
wait $B
uptime >> "$OUT/load.log"
