#!/usr/bin/env bash
# The GPU figures (issue "speed and scale", item 5) in one command on a machine the device
# tool lends: the CUDA tests, then bench/patching, steering, views and long on CUDA in bf16.
# Prepare here with `make gpu-carry`, then: run(command="bash bench/gpu.sh",
# carry=[".whl", ".gpu", "actwidgets/static"], timeout_s=600). The machine's image has torch and
# transformers but not nnsight or anywidget (.whl: their wheels, at this venv's versions), and
# the default model's 93 MB wheel is more than a call may send (64 MiB): the benches run a
# model of its config with random weights (.gpu/model: config and tokenizer), so its times
# are the default model's and its numbers are not. Each step writes $OUT/<step>.txt.
# The steps' limits add up to 9 minutes. Dry run on the CPU (no .whl needed):
#   PY=.venv/bin/python NO_WHEELS=1 DEVICE=cpu LONG_TOKENS="64 128" TIME_SCALE=10 bash bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/gpu-out}
PY=${PY:-python3}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD" AW_TOKENIZER="$PWD/.gpu/model"
if [ -d .whl ] && [ -z "${NO_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl failed"; exit 1; }
  export PYTHONPATH="$PWD:/tmp/site"
fi
[ -f .gpu/model/config.json ] || { echo ".gpu/model is missing: run make gpu-carry here and carry .gpu"; exit 1; }

step() {  # step NAME SECONDS COMMAND...: its output in $OUT/NAME.txt, its last line here
  local name=$1 limit=$(($2 * ${TIME_SCALE:-1})); shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  echo "== $name: rc $? in $((SECONDS - start)) s: $(tail -n 1 "$OUT/$name.txt" | cut -c1-1500)"
}

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
on=(--device "${DEVICE:-cuda}" --dtype bfloat16 --random-weights .gpu/model)
step test_cuda 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
step patching 150 "$PY" bench/patching.py "${on[@]}"
step steering 120 "$PY" bench/steering.py "${on[@]}"
step views 60 "$PY" bench/views.py "${on[@]}"
# shellcheck disable=SC2086  # LONG_TOKENS is two numbers
step long 120 "$PY" bench/long.py "${on[@]}" --no-draw --tokens ${LONG_TOKENS:-1024 8192}
