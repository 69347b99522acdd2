#!/usr/bin/env bash
# Every GPU measurement in RESULTS.md, in one go, as run on the lent H100 (see RESULTS.md, "GPU").
# Usage: LOGS=/tmp/gpu bash benchmarks/gpu.sh [DEVICE [STEP...]]   (default: cuda, every step)
# Logs land in $LOGS, one per step, and in the tarball $BUNDLE (if set) after each step. Each step has its own time limit, so one hang costs that
# step, not the rest. QUICK=1 shrinks every job (a check of this script on a CPU).
set -u
DEV=${1:-cuda}
LOGS=${LOGS:-/tmp/gpu}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
shift || true
ONLY=" $* "
Q=(); P=()
if [ -n "${QUICK:-}" ]; then Q=(--quick --repeat 1); P=(--subset 2000 --epochs 2); fi
step() { local limit=$1 name=$2; shift 2
         if [ "$ONLY" != "  " ] && [[ "$ONLY" != *" $name "* ]]; then return; fi
         echo "== $name: $*"; local t0=$SECONDS
         timeout -k 5 "$limit" "$@" > "$LOGS/$name.log" 2>&1; local rc=$?
         tail -n "${TAIL:-8}" "$LOGS/$name.log"; echo "== $name: exit $rc, $((SECONDS - t0)) s"
         if [ -n "${BUNDLE:-}" ]; then tar czf "$BUNDLE" -C "$LOGS" .; fi; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$PY -c "import torch, platform; print('torch', torch.__version__, 'python', platform.python_version(), 'cuda', torch.cuda.is_available())"
# the headline first (issue 24): seconds from Enter to a checkpoint at the target, median of 3 fresh starts, by phase
step 240 tta-mlp $PY benchmarks/time_to_accuracy.py fashion-mnist-mlp 0.88 --device "$DEV" --repeat 3
step 300 tta-cnn $PY benchmarks/time_to_accuracy.py fashion-mnist-cnn 0.90 --max-epochs 15 --device "$DEV" --repeat 3
step 150 sync $PY -m pytest -q -p no:cacheprovider tests/test_capture.py tests/test_engine.py -k "sync or capture or compile or optimizer"
step 240 tp128c $PY benchmarks/throughput.py --device "$DEV" --batch-size 128 --epochs 5 --modes abc --repeat 3 "${Q[@]}" --compile
step 240 tp64c $PY benchmarks/throughput.py --device "$DEV" --batch-size 64 --epochs 5 --modes abc --repeat 3 "${Q[@]}" --compile
step 240 tp128 $PY benchmarks/throughput.py --device "$DEV" --batch-size 128 --epochs 5 --modes abcd --repeat 3 "${Q[@]}"
step 240 tp64 $PY benchmarks/throughput.py --device "$DEV" --batch-size 64 --epochs 5 --modes abc --repeat 3 "${Q[@]}"
TAIL=20 step 240 presets $PY benchmarks/presets.py --device "$DEV" --epochs 3 "${P[@]}"
TAIL=6 step 120 presets-compile $PY benchmarks/presets.py fashion-mnist-mlp fashion-mnist-cnn cifar10-resnet imagefolder-cnn \
    --device "$DEV" --epochs 3 --compile "${P[@]}"
TAIL=4 step 120 resnet-bf16-cl $PY benchmarks/presets.py cifar10-resnet fashion-mnist-cnn --device "$DEV" --epochs 3 "${P[@]}" \
    --set train.amp=\"bf16\" --set train.channels_last=true
step 120 ddp1 $PY benchmarks/ddp_cost.py --device "$DEV" --nproc 1 ${QUICK:+--steps 30}
step 300 events $PY benchmarks/events_cost.py --device "$DEV" --epochs 3 --repeat 3 ${QUICK:+--quick}
step 120 attach $PY benchmarks/attach.py --epochs 10000 ${QUICK:+--epochs 1000}
TAIL=20 step 90 screen120 $PY benchmarks/screen.py fashion-mnist-mlp --device "$DEV" --epochs 4 --size 120x36 --out "$LOGS"
TAIL=20 step 90 screen80 $PY benchmarks/screen.py fashion-mnist-mlp --device "$DEV" --epochs 4 --size 80x24 --out "$LOGS"
step 150 tests-engine $PY -m pytest -q -p no:cacheprovider -x tests/test_engine.py tests/test_data_real.py tests/test_models_arch.py tests/test_models_optim_data.py
