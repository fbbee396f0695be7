#!/usr/bin/env bash
# GPU smoke test and speed check, under 8 minutes:
#   1. install polydiff and every plugin in modalities/ (editable);
#   2. per available modality: a short bf16 + torch.compile training of its default model and a
#      20-step sampling run, printing steps/s, samples/s and peak GPU memory;
#   3. one end-to-end `polydiff train` (bf16, compile) + `polydiff sample` on the GPU, and with
#      several GPUs a two-process torchrun run of the same.
# Usage: bash benchmarks/gpu_check.sh            (env: PYTHON, STEPS, BUDGET_S)
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
STEPS=${STEPS:-30}
BUDGET_S=${BUDGET_S:-450}   # whole-script budget; every phase gets what is left of it
START=$(date +%s)
export PIP_DISABLE_PIP_VERSION_CHECK=1

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
phase() { echo; echo "== $* ($(left) s left)"; }
# run_for SECONDS CMD...: CMD with at most SECONDS (and never past the budget); 124 on timeout
run_for() {
  local want=$1 budget
  shift
  budget=$(left)
  [ "$want" -gt "$budget" ] && want=$budget
  if [ "$want" -lt 10 ]; then echo "gpu_check: out of time, skipped: $*"; return 124; fi
  timeout --kill-after=10 "$want" "$@"
}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); this check needs one. Nothing was run."
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

phase "install"
plugins=()
for d in modalities/*/; do [ -f "$d/pyproject.toml" ] && plugins+=(-e "$d"); done
run_for 240 "$PYTHON" -m pip install -q -e . "${plugins[@]}" || { echo "gpu_check: install failed"; exit 1; }

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch $("$PYTHON" -c 'import torch; print(torch.__version__)') sees no CUDA device (CPU-only build?)"
  exit 2
fi
NGPU=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
MODALITIES=$("$PYTHON" - <<'EOF'
from polydiff.registry import get_registry
print(" ".join(i.name for i in get_registry().infos() if i.status == "ok"))
EOF
)
echo "GPUs: $NGPU   modalities: ${MODALITIES:-none}"
[ -n "$MODALITIES" ] || { echo "gpu_check: no working modality plugin installed"; exit 1; }

rc=0
phase "speed: bf16 + torch.compile, $STEPS timed steps, then 20 sampling steps, per modality"
set -- $MODALITIES
n=$#
for m in $MODALITIES; do
  # eager first (a baseline, and the fallback if compilation fails), then compiled; each
  # modality gets an equal share of what is left, keeping 90 s for the end-to-end runs
  share=$(( ($(left) - 90) / n )); n=$(( n - 1 ))
  run_for "$share" "$PYTHON" benchmarks/train_speed.py \
    --modality "$m" --device cuda --precision bf16 --compile off,on \
    --steps "$STEPS" --warmup 5 --sample-steps 20 --sample-n 64 || { echo "gpu_check: $m speed run failed"; rc=1; }
done

RUN=$(mktemp -d)
first=${MODALITIES%% *}
phase "end to end: polydiff train/sample on $first (bf16, compile)"
run_for 60 "$PYTHON" -m polydiff train -m "$first" --device cuda \
  --steps 100 --precision bf16 --compile --out "$RUN/one" \
  && run_for 30 "$PYTHON" -m polydiff sample "$RUN/one" --steps 20 --n 16 \
  || { echo "gpu_check: end-to-end run failed"; rc=1; }

if [ "$NGPU" -ge 2 ] && [ "$(left)" -gt 40 ]; then
  phase "torchrun: 2 processes, NCCL"
  run_for 60 "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2 \
    -m polydiff train -m "$first" --steps 100 --precision bf16 --out "$RUN/ddp" \
    || { echo "gpu_check: torchrun run failed"; rc=1; }
fi
rm -rf "$RUN"
echo
echo "gpu_check: finished in $(( $(date +%s) - START )) s with status $rc"
exit $rc
