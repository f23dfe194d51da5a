#!/usr/bin/env bash
# The one prepared run on a lent CUDA machine (issue 14; docs/gpu.md says how to prepare and read it):
#   1. benchmarks/gpu_workers.py: 1, 2, 4 and 8 processes sharing the GPU (with the CUDA defaults, graphs on: each
#      process captures twice, the check that put graphs on by default; WORKERS_ARGS adds options);
#   2. the default pipeline, `fsearch run --trials 50` + `fsearch export-best`, through the headline harness;
#   3. benchmarks/gpu_loop.py: the loop's images/s as it was and with each CUDA option.
# Each part is time-boxed and writes as it goes, so a part that overruns costs only itself. Run from the repository
# root with the data under $DATA (default .devdata) and, where the machine's Python lacks them, fsearch's
# pure-Python dependencies as wheels in .whl/. Results land in $OUT (8 files at most).
set -u
OUT=${OUT:-/tmp/gpu-out}
DATA=${DATA:-.devdata}
mkdir -p "$OUT"
if ! python3 -c "import optuna, optuna_dashboard" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
{
    date -u; nproc; nvidia-smi
    python3 -c "import torch, optuna; print('torch', torch.__version__, 'optuna', optuna.__version__)"
} > "$OUT/machine.txt" 2>&1

# shellcheck disable=SC2086
timeout "${WORKERS_S:-60}" python3 -m benchmarks.gpu_workers --out "$OUT/gpu_workers.json" \
    ${WORKERS_ARGS:-} > "$OUT/gpu.log" 2>&1
echo "gpu_workers: exit $?" >> "$OUT/gpu.log"

H=/tmp/headline
rm -rf "$H" && mkdir -p "$H"
started=$(date +%s)
# shellcheck disable=SC2086  # HEADLINE_ARGS is a list of options (a dry run's smaller settings)
timeout "${HEADLINE_S:-380}" python3 -m benchmarks.bench --data-dir "$DATA" --parts '' --headline --seed 0 \
    --skip-references --headline-dir "$H" --out "$H/bench.json" ${HEADLINE_ARGS:-} > "$H/log.txt" 2>&1
echo "headline: exit $? after $(($(date +%s) - started)) s" | tee -a "$H/log.txt"
cp "$H/log.txt" "$H/bench.json" "$H/bench.db" "$OUT/" 2>/dev/null
cp "$H/best/config.json" "$OUT/config.json" 2>/dev/null

# shellcheck disable=SC2086
timeout "${LOOP_S:-120}" python3 -m benchmarks.gpu_loop --data-dir "$DATA" --out "$OUT/gpu_loop.json" \
    ${LOOP_ARGS:-} >> "$OUT/gpu.log" 2>&1
echo "gpu_loop: exit $?" >> "$OUT/gpu.log"
tail -n 4 "$H/log.txt"
cat "$OUT/gpu.log" | grep -v "^ " | tail -n 30
