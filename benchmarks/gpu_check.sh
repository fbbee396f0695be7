#!/usr/bin/env bash
# GPU smoke test and speed check, about 6 minutes on one H100:
#   1. install polydiff and every plugin in modalities/ (editable; offline first: no deps, no
#      build isolation), and the wheels carried in .whl/ (see below) into /tmp/site;
#   2. per available modality: a short bf16 + torch.compile training of its default model and a
#      20-step sampling run, printing steps/s, samples/s and peak GPU memory;
#   3. images: training throughput of our U-Net against diffusers' UNet2DModel and
#      denoising-diffusion-pytorch's Unet (benchmarks/images.py --part throughput --device cuda,
#      peers with their documented fp16 + GradScaler and with our bf16 + channels-last settings);
#   4. one end-to-end `polydiff train` (bf16, compile) + `polydiff sample` on the GPU, and with
#      several GPUs a two-process torchrun run of the same.
# Usage: bash benchmarks/gpu_check.sh            (env: PYTHON, STEPS, BUDGET_S, IMAGES_JSON)
#
# A machine without internet gets the peers as wheels in .whl/ at the repository root (ignored by
# git): .whl/*.whl are always installed, .whl/extra/*.whl only where that distribution is missing
# (all of them if the peers still fail to import). Download them with, per package,
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl NAME==VERSION
# (diffusers, denoising-diffusion-pytorch and ema-pytorch in .whl/; torchvision matching the
# machine's torch, huggingface-hub, requests and their dependencies in .whl/extra/).
# IMAGES_JSON=FILE keeps the images results (render them with
# `python benchmarks/images.py --load FILE --write`); IMAGES_COMPILE=1 adds a torch.compile run of
# the 16x16 comparison (about 3 more minutes; results in FILE.compile.json).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
STEPS=${STEPS:-30}
BUDGET_S=${BUDGET_S:-360}   # whole-script budget; every phase gets what is left of it
IMAGES_S=${IMAGES_S:-100}   # kept for the images throughput phase
E2E_S=90                    # kept for the end-to-end runs
START=$(date +%s)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=${PIP_DEFAULT_TIMEOUT:-10} PIP_RETRIES=${PIP_RETRIES:-1}

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
# offline first (the dependencies are there; build isolation would download setuptools), then
# the ordinary way
run_for 120 "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . "${plugins[@]}" \
  || run_for 240 "$PYTHON" -m pip install -q -e . "${plugins[@]}" \
  || { echo "gpu_check: install failed"; exit 1; }

# the peers of benchmarks/images.py, from carried wheels (PYTHONPATH for that phase only)
SITE=/tmp/site
PEERS_PP=${PYTHONPATH:-}
peers_ok() { PYTHONPATH="$PEERS_PP" "$PYTHON" -c "import diffusers, denoising_diffusion_pytorch" 2>"$1"; }
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  rm -rf "$SITE"
  PEERS_PP="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  wheels=(.whl/*.whl)
  for w in .whl/extra/*.whl; do
    [ -f "$w" ] || continue
    dist=$(basename "$w" | cut -d- -f1)
    "$PYTHON" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" 2>/dev/null \
      || wheels+=("$w")
  done
  echo "wheels: ${wheels[*]##*/}"
  run_for 120 "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" "${wheels[@]}" \
    || echo "gpu_check: installing the carried wheels failed"
  if ! peers_ok /tmp/peers_err.txt && ls .whl/extra/*.whl >/dev/null 2>&1; then
    tail -n 3 /tmp/peers_err.txt
    echo "gpu_check: peers do not import; installing every carried wheel over the machine's"
    run_for 120 "$PYTHON" -m pip install -q --no-index --no-deps --upgrade --target "$SITE" \
      .whl/*.whl .whl/extra/*.whl || echo "gpu_check: installing the carried wheels failed"
  fi
fi

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
  # modality gets an equal share of what is left, keeping time for the images comparison and the
  # end-to-end runs
  share=$(( ($(left) - IMAGES_S - E2E_S) / n )); n=$(( n - 1 ))
  run_for "$share" "$PYTHON" benchmarks/train_speed.py \
    --modality "$m" --device cuda --precision bf16 --compile off,on \
    --steps "$STEPS" --warmup 5 --sample-steps 20 --sample-n 64 || { echo "gpu_check: $m speed run failed"; rc=1; }
done

RUN=$(mktemp -d)
if [[ " $MODALITIES " == *" images "* ]]; then
  phase "images: our U-Net vs diffusers and denoising-diffusion-pytorch, training throughput"
  if peers_ok /tmp/peers_err.txt; then
    PYTHONPATH="$PEERS_PP" run_for $(( $(left) - E2E_S )) "$PYTHON" benchmarks/images.py \
      --part throughput --device cuda --rounds 8 --round-seconds 0.3 --warmup 5 \
      --json "${IMAGES_JSON:-$RUN/images_cuda.json}" \
      || { echo "gpu_check: images throughput comparison failed"; rc=1; }
    if [ "${IMAGES_COMPILE:-0}" = 1 ]; then
      # torch.compile on every contender under our settings: ~3 min of compilation for 16x16
      BUDGET_S=$(( BUDGET_S + 200 ))
      PYTHONPATH="$PEERS_PP" run_for $(( $(left) - E2E_S )) "$PYTHON" benchmarks/images.py \
        --part throughput --device cuda --compile on --settings ours --configs 16x16x1 \
        --rounds 6 --round-seconds 0.3 --warmup 3 \
        --json "${IMAGES_JSON:-$RUN/images_cuda.json}.compile.json" \
        || { echo "gpu_check: images compiled throughput comparison failed"; rc=1; }
    fi
  else
    tail -n 3 /tmp/peers_err.txt
    echo "gpu_check: diffusers / denoising-diffusion-pytorch not importable (no internet? carry"
    echo "  their wheels in .whl/, see the top of this script); images comparison skipped"
    rc=1
  fi
fi

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
