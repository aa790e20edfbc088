#!/usr/bin/env bash
# Issue 12's GPU checks in one run (about 8 minutes on one H100): tests on CUDA and the GPU training benchmark.
#
#   bash benchmarks/gpu/device_run.sh            # from the repository root; results under $OUT (default /tmp/out)
#
# Steps, most important first; each is bounded by `timeout` and writes its own files, so a run cut short still
# returns what finished (bench_gpu.json is rewritten after every measurement):
#   0. carried wheels (.whl/*.whl) into /tmp/site, segkit's metadata and a `segkit` command (no network);
#   1. env.txt: GPU, driver, torch/CUDA/cuDNN and package versions;
#   2. tests_targeted.log (TARGETED_S, default 100 s): the tests that failed on CUDA before (EMA checkpoint,
#      deterministic kill-and-resume, --nproc 2 gloo DDP, list-registry --json) and tests/engine/test_speed.py;
#   3. bench_gpu.json / .md (BENCH1_S, default 190 s): bf16 matmul ceiling; batch hand-over (float32 copy vs
#      uint8 + DeviceNormalize); FCN-R50-D8 512x512 batch 16 bf16,
#      segkit vs the plain loop (NCHW, channels_last, channels_last + torch.compile) and the criterion's cost;
#      float32 memory (first-step vs steady peaks, cudnn.benchmark on/off, TF32 off, CUDNN_CONV_WSCAP_DBG=1024);
#   4. tests.log (SUITE_S, default 150 s): the whole suite, `pytest -q -n $NWORKERS tests (default 8)`;
#   5. bench_gpu.json (merged): Mask2Former-R50 640x640 bf16, then fp32/fp16/bf16 for FCN and DeepLabV3, in
#      whatever time is left of TOTAL_S (default 480 s).
# DRY_RUN=1 (on a machine without CUDA) only collects the tests and runs the benchmark's code paths at tiny sizes on
# the CPU; PY names the Python (default python3).
set -u
START=$(date +%s)
PY=${PY:-python3}
DRY_RUN=${DRY_RUN:-0}
if [[ "$DRY_RUN" == 1 ]]; then
  COLLECT=(--collect-only -q); BENCH_DRY=(--quick --device cpu); WORKERS=(-p no:xdist)
else
  COLLECT=(); BENCH_DRY=(); WORKERS=(-n "${NWORKERS:-8}")
fi
TOTAL_S=${TOTAL_S:-480}
TARGETED_S=${TARGETED_S:-100}
BENCH1_S=${BENCH1_S:-190}
SUITE_S=${SUITE_S:-150}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
LOG="$OUT/device_run.log"
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( TOTAL_S - $(elapsed) )); }
log() { echo "[+$(elapsed)s] $*" | tee -a "$LOG"; }
last_line() { grep -v '^[[:space:]]*$' "$1" | tail -n 1; }
cap() { local want=$1 rest; rest=$(( $(left) - ${2:-0} )); (( rest < want )) && want=$rest; (( want < 5 )) && want=5; echo "$want"; }

# ---------------------------------------------------------------------------------------------- 0. packages
if compgen -G ".whl/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >> "$LOG" 2>&1 || log "pip install of the carried wheels failed (see above)"
fi
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# segkit's metadata (importlib.metadata: version, entry points) and a `segkit` command, without a build backend
$PY - <<'EOF' >> "$LOG" 2>&1
import pathlib, tomllib
meta = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
info = pathlib.Path("/tmp/site") / f"segkit-{meta['version']}.dist-info"
info.mkdir(parents=True, exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: segkit\nVersion: {meta['version']}\n")
eps = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in meta.get("scripts", {}).items())
for group, items in meta.get("entry-points", {}).items():
    eps += f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items())
(info / "entry_points.txt").write_text(eps)
(info / "RECORD").write_text("")
print("segkit metadata in", info)
EOF
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec %s -m segkit "$@"\n' "$(command -v "$PY")" > /tmp/bin/segkit && chmod +x /tmp/bin/segkit
export PATH="/tmp/bin:$PATH"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
log "setup done"

# ---------------------------------------------------------------------------------------------- 1. environment
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  $PY - <<'EOF' 2>&1
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(),
      "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for name in ("torchvision", "timm", "pydantic", "albumentations", "numpy", "scipy", "cv2", "typer", "rich", "pytest",
             "xdist", "onnx", "onnxruntime", "tensorboard", "matplotlib", "torchmetrics", "triton"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING", type(exc).__name__)
import segkit.engine.trainer  # noqa: F401  (segkit imports with the carried packages)
print("segkit imports OK")
EOF
} > "$OUT/env.txt" 2>&1
log "env: $(head -c 300 "$OUT/env.txt" | tr '\n' ' ')"

# ---------------------------------------------------------------------------------------------- 2. targeted tests
T=$(cap "$TARGETED_S" $(( BENCH1_S + SUITE_S )))
log "targeted tests (timeout ${T}s)"
timeout -k 5 "$T" $PY -m pytest -q -p no:cacheprovider "${WORKERS[@]}" --durations=8 "${COLLECT[@]}" tests/engine/test_speed.py \
  tests/engine/test_features.py::test_ema_weights_are_saved_and_evaluable \
  tests/engine/test_features.py::test_plugin_registers_a_backbone_usable_from_a_recipe \
  tests/engine/test_training.py::test_killed_mid_epoch_then_resumed_is_bit_identical \
  tests/engine/test_training.py::test_two_process_gloo_ddp > "$OUT/tests_targeted.log" 2>&1
log "targeted tests rc=$? : $(last_line "$OUT/tests_targeted.log")"

# ---------------------------------------------------------------------------------------------- 3. bench, first half
T=$(cap "$BENCH1_S" "$SUITE_S")
log "bench ceiling,input,core,fp32mem (budget ${T}s)"
timeout -k 5 $(( T + 20 )) $PY benchmarks/bench_gpu.py "${BENCH_DRY[@]}" --parts ceiling,input,core,fp32mem --budget-s "$T" \
  --out "$OUT/bench_gpu.json" > "$OUT/bench_1.log" 2>&1
log "bench 1 rc=$?"

# ---------------------------------------------------------------------------------------------- 4. whole suite
T=$(cap "$SUITE_S" 0)
log "whole suite (timeout ${T}s)"
timeout -k 5 "$T" $PY -m pytest -q -p no:cacheprovider "${WORKERS[@]}" "${COLLECT[@]}" tests > "$OUT/tests.log" 2>&1
log "whole suite rc=$? (124 = timed out) : $(last_line "$OUT/tests.log")"

# ---------------------------------------------------------------------------------------------- 5. bench, the rest
T=$(( $(left) - 5 ))
if (( T > 40 )); then
  log "bench mask2former,precisions (budget $(( T - 15 ))s)"
  timeout -k 5 "$T" $PY benchmarks/bench_gpu.py "${BENCH_DRY[@]}" --parts mask2former,precisions --budget-s $(( T - 15 )) \
    --out "$OUT/bench_gpu.json" > "$OUT/bench_2.log" 2>&1
  log "bench 2 rc=$?"
else
  log "no time left for bench 2"
fi
log "done"
