#!/usr/bin/env bash
# The recognition, throughput and real-time-factor benchmarks on CUDA, for a GPU machine that
# has Python 3.12 with CUDA torch and transformers but no funasr and no network (this project's
# lent H100/H200: see /work/.library/device/KINDS.md). One call, under 8 minutes:
#
#   here, once:    bash bench/gpu_wheels.sh    # wheels + real FSMN-VAD weights into bench/.cache
#   on the GPU:    bash bench/gpu.sh           # timeout 540 s, carrying (all git-ignored, ~50 MB):
#                  bench/.cache/wheels-cp312  bench/.cache/models/fsmn-vad  funasr_widget/static
#
# It builds the three ASR models at their real size with random weights on that machine
# (SenseVoiceSmall, paraformer-zh-streaming, Fun-ASR-Nano-2512 with Qwen3-0.6B; about 3.5 GB,
# too big to carry), then runs `python -m bench --device cuda --quick` on them. The report
# lands in $OUT (the device tool's folder) or bench/.cache/gpu-out: RESULTS-cuda.md and .json.
#
# Without a GPU, the same steps (tiny models, CPU, Python 3.11 wheels from PYVER=3.11 gpu_wheels.sh):
#   BENCH_DEVICE=cpu BENCH_TINY=1 BENCH_WHEELS=bench/.cache/wheels-cp311 PYTHON=venv/bin/python bash bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${BENCH_DEVICE:-cuda}
WHEELS=${BENCH_WHEELS:-bench/.cache/wheels-cp312}
OUTDIR=${OUT:-bench/.cache/gpu-out}
mkdir -p "$OUTDIR"
start=$(date +%s)

[ -f funasr_widget/static/widget.js ] || { echo "funasr_widget/static is missing: build the front end and carry it"; exit 2; }
[ -f bench/.cache/models/fsmn-vad/model.pt ] || ls models/fsmn-vad/model.pt >/dev/null 2>&1 ||
  { echo "no FSMN-VAD weights: carry bench/.cache/models/fsmn-vad (bench/gpu_wheels.sh puts them there)"; exit 2; }
if ! "$PY" -c "import funasr" 2>/dev/null; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels: run bench/gpu_wheels.sh first and carry $WHEELS"; exit 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/bench-site "$WHEELS"/*.whl || exit 2
  export PYTHONPATH=/tmp/bench-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$PY" - <<'EOF' 2>&1 | tee "$OUTDIR/env.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__,
      "cuda", torch.cuda.is_available() and torch.cuda.get_device_name(0))
EOF

TINY=()
[ -n "${BENCH_TINY:-}" ] && TINY=(--tiny)
MODELS=(sensevoice-small paraformer-zh-streaming fun-asr-nano)
left=$(( ${BENCH_BUDGET_S:-470} - ($(date +%s) - start) ))
timeout "$left" "$PY" -m bench --device "$DEVICE" --quick "${TINY[@]}" \
  --parts recognition throughput rtf --models "${MODELS[@]}" --two-pass \
  --out "$OUTDIR/RESULTS-$DEVICE.md" 2>&1 | tee "$OUTDIR/log.txt"
status=${PIPESTATUS[0]}
echo "bench/gpu.sh: exit $status after $(( $(date +%s) - start )) s; report: $OUTDIR/RESULTS-$DEVICE.md"
exit "$status"
