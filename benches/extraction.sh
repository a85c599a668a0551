#!/usr/bin/env bash
# Extraction benchmark (issue 5, docs/PERF.md "Extraction"): images/s of `llava_sae` end to end (decode, resize,
# forward, SAE encode for every layer, top-k, totals, health, Parquet) and bytes per stored non-zero of `codes`.
#
#   benches/extraction.sh [MODEL_DIR] [IMAGES] [LAYERS]
#
# MODEL_DIR defaults to the mid-size bench model with its random SAEs and noise images: build them with
#   /work/scratch/sae-venv/bin/python benches/extraction_saes.py   (MODEL_DIR/saes/blocks.L.hook_resid_post, MODEL_DIR/images)
# `tests/fixtures/llava/a` (the tiny fixture: MODEL_DIR/model, saes at layers 1 and 3) works too:
#   benches/extraction.sh tests/fixtures/llava/a 3200 "1, 3"
# Env: SAEFLOW_BIN (default target/release/saeflow, built here), BATCH (8), PART (256 images per part),
# RAYON_NUM_THREADS (candle's matmul threads).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(realpath "${1:-/work/scratch/bench-llava-mid}")
n=${2:-256}
layers=${3:-0, 6, 12, 17}
model=$dir; [ -d "$dir/model" ] && model=$dir/model
bin=${SAEFLOW_BIN:-target/release/saeflow}
[ -n "${SAEFLOW_BIN:-}" ] || cargo build --release --quiet
work=target/bench-extraction
rm -rf "$work"; mkdir -p "$work/pipelines"
if [ -d "$dir/images" ]; then   # the noise PNGs extraction_saes.py wrote (the SAEs' calibration set)
  dataset="    format: imagefolder
    path: $dir/images
    limit: $n"
else                             # e.g. the tiny fixture: saeflow's synthetic shapes
  dataset="    format: synthetic
    classes: 8
    train_per_class: $(( n / 8 ))
    test_per_class: 0
    image_size: 32"
fi
cat > "$work/pipelines/bench.yaml" <<YAML
name: bench
stages:
  dataset:
    kind: dataset
$dataset
  codes:
    kind: llava_sae
    from: dataset.images
    model: $model
    sae: $dir/saes/blocks.\${layer}.hook_resid_post
    batch: ${BATCH:-8}
    part_images: ${PART:-256}
    image_scale: ${IMAGE_SCALE:-unscaled}   # as transformers >= 5.4, which the SAEs were calibrated with
    matrix: {layer: [$layers]}
YAML
"$bin" run "$work/pipelines/bench.yaml" --cache "$work/cache" --only dataset > /dev/null
[ -z "${BENCH_PREPARE_ONLY:-}" ] || exit 0
start=$(date +%s.%N)
/usr/bin/time -f "%e s wall, %U s user, %M KB peak RSS" -o "$work/time.txt" \
  "$bin" run "$work/pipelines/bench.yaml" --cache "$work/cache" > "$work/run.log" 2>&1
end=$(date +%s.%N)
python3 - "$work/cache" "$n" "$start" "$end" "$(cat "$work/time.txt")" <<'PY'
import json, pathlib, sys
cache, n, start, end, timing = pathlib.Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
rows = size = 0
by = {}
for m in sorted(cache.glob("*/manifest.json")):
    man = json.loads(m.read_text())
    if man["kind"] != "llava_sae":
        continue
    b = sum(f["size"] for f in man["files"])
    by.setdefault(man["output"], [0, 0])
    by[man["output"]][0] += man["rows"]
    by[man["output"]][1] += b
wall = end - start
codes_rows, codes_bytes = by.get("codes", [0, 0])
print(json.dumps({
    "images": n, "wall_s": round(wall, 2), "images_per_s": round(n / wall, 2), "time": timing,
    "codes_rows": codes_rows, "codes_bytes": codes_bytes,
    "bytes_per_nnz": round(codes_bytes / max(codes_rows, 1), 2),
    "by_output": {k: {"rows": v[0], "bytes": v[1]} for k, v in sorted(by.items())},
}))
PY
