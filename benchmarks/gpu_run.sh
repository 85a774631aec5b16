#!/bin/bash
# The kit's GPU checks as one device call (see benchmarks/bench_gpu.py). Run from the repository
# root on the GPU machine, with .gpu/ (from `bench_gpu.py prepare .gpu` and the wheels of the
# packages the machine lacks, in .gpu/whl) carried along and $OUT set. Each part has its own
# time limit, so one that hangs or runs long costs only its own numbers.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
# GPU_TINY=1: a quick check of this script on a CPU (small sizes, no installs).
if [ -z "${GPU_TINY:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpu/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi 2>/dev/null --query-gpu=name,memory.used,memory.total,clocks.sm,temperature.gpu --format=csv
log="$OUT/run.log"
run() {  # run LIMIT PART ARGS...
    local limit=$1; shift
    local start=$SECONDS
    timeout "$limit" python3 benchmarks/bench_gpu.py "$@" ${GPU_TINY:+--tiny} --data .gpu --out "$OUT" >>"$log" 2>&1
    echo "part $1: exit $? after $((SECONDS - start)) s" | tee -a "$log"
}
# Sized for the 15 minutes of device time a session gets (about one of them to start): the
# LLM first (how formula following grows with training is the open question), then the flow.
# Tied embeddings and formula-or-nothing prompts: on the CPU these made a demo-sized model copy
# the first element of its prompt's formula after 1,500 steps (see README, LLM status).
run ${LLM_LIMIT:-480} llm-train --max-steps ${LLM_STEPS:-1200} --tie --conditioning formula
run 80 llm-speed
run 150 flow
grep -E "Error|error|Traceback" "$log" | tail -n 20
cat "$OUT"/flow.md "$OUT"/llm_train.md "$OUT"/llm_speed.md 2>/dev/null
