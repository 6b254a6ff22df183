#!/usr/bin/env bash
# The prepared GPU check (`make test-gpu`): the CUDA / bf16 tests, with a missing
# GPU a failure rather than a skip. Run it on a machine with an NVIDIA GPU after
# `make install`; it takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" - <<'PY'
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0), "bf16:", torch.cuda.is_bf16_supported())
PY
DIFE_REQUIRE_GPU=1 DIFE_STRICT_PLUGINS=1 "$PY" -m pytest -q -m gpu -rs "$@"

# -- scale (docs/scale.md): the demo audit on CUDA gives the CPU run's statuses, and the
# embedding service's encode throughput is >= 0.8x a raw bf16 loop over the same ViT-B/32 tower.
# GPU_CHECK_PRESET=default audits the full demo (its builds train first on a bare machine).
PRESET=${GPU_CHECK_PRESET:-test}
OUT=${GPU_CHECK_OUT:-/tmp/dife-gpu-check}
mkdir -p "$OUT"
export DIFE_CACHE_DIR=${DIFE_CACHE_DIR:-$OUT/cache}
for dev in cpu cuda; do
  /usr/bin/time -f "demo ($dev): %e s wall, %M KB peak RSS" .venv/bin/dife demo --preset "$PRESET" --device "$dev" \
    --out "$OUT/demo-$dev" --fresh --force --no-progress > "$OUT/demo-$dev.log" 2>&1 || { tail -40 "$OUT/demo-$dev.log"; exit 1; }
  tail -1 "$OUT/demo-$dev.log"
done
"$PY" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
st = {d: {(c["checkpoint"], c["interface"]): c["status"] for c in json.load(open(f"{out}/demo-{d}/results.json"))["cells"]}
      for d in ("cpu", "cuda")}
diff = {k: (st["cpu"][k], st["cuda"].get(k)) for k in st["cpu"] if st["cpu"][k] != st["cuda"].get(k)}
print(f"demo statuses: {len(st['cpu'])} cells, {len(diff)} differ between cpu and cuda", diff or "")
sys.exit(1 if diff or set(st["cpu"]) != set(st["cuda"]) else 0)
PY
"$PY" benchmarks/bench_clip_sized.py throughput --device cuda --models vit-b-32 rn50 hf-vit-b-32 --n 4096 \
  --batch 256 --runs 3 --json "$OUT/throughput-cuda.json"
"$PY" - "$OUT/throughput-cuda.json" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
for r in rows:
    print(f"{r['model']}: service {r['service_img_per_s']:.0f} img/s, raw bf16 {r['raw_img_per_s']:.0f} img/s, "
          f"ratio {r['ratio_service_over_raw_throughput']:.3f}")
sys.exit(0 if all(r["ratio_service_over_raw_throughput"] >= 0.8 for r in rows) else 1)
PY
