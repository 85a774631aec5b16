#!/bin/bash
# Formula-following learning curves (benchmarks/llm_formula_curve.py) for six small scratch
# LLMs side by side on one GPU, as one device call. Run from the repository root with .gpu/
# carried along (see benchmarks/results/gpu.md, "How to rerun") and $OUT set. CURVES picks the
# set: "recipes" (default: width, depth, batch, learning rate and prompts against the CPU
# recipe, each for CURVE_SECONDS of training and evaluation) or "passes" (batch size and depth
# at a fixed 20 passes over MP-20 val, and batch 64 for 60) or "trainer" (the demo preset's
# recipe through the kit's Trainer against the plain loop: length grouping, fp32 against bf16,
# a second seed, and 40 passes) or "small-batch" (random order at batch 16 and 32, learning
# rate, seed, 40 passes). GPU_TINY=1 checks it on a CPU.
# Results: benchmarks/results/llm_formula.md.
set -u
OUT=${OUT:-gpu_out}
SECONDS_EACH=${CURVE_SECONDS:-420}
mkdir -p "$OUT"
if [ -z "${GPU_TINY:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpu/whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
nvidia-smi 2>/dev/null --query-gpu=name,memory.used,memory.total --format=csv
curve() {  # curve NAME ARGS...
    local name=$1; shift
    timeout $((SECONDS_EACH + 60)) python3 benchmarks/llm_formula_curve.py --name "$name" \
        --data .gpu --out "$OUT" --seconds "$SECONDS_EACH" "$@" \
        ${GPU_TINY:+--tiny --max-steps 45} >"$OUT/curve_$name.log" 2>&1
    echo "curve $name: exit $?"
}
# Every row also lands in curve_NAME.log, which is all a device call may bring back when the
# number of files it writes is capped.
if [ "${CURVES:-recipes}" = recipes ]; then
    curve base --width 128 --layers 4 --heads 4 --batch 16 --lr 3e-3 &
    curve lr6e-3 --width 128 --layers 4 --heads 4 --batch 16 --lr 6e-3 &
    curve batch64 --width 128 --layers 4 --heads 4 --batch 64 --lr 3e-3 &
    curve deep --width 128 --layers 8 --heads 4 --batch 16 --lr 3e-3 &
    curve wide --width 256 --layers 4 --heads 8 --batch 16 --lr 2e-3 &
    curve random --width 128 --layers 4 --heads 4 --batch 16 --lr 3e-3 --conditioning random &
elif [ "${CURVES}" = trainer ]; then
    # The demo preset: 2 blocks, batch 32, lr 3e-3, 8,480 steps (30 passes), fp32 as on a CPU.
    demo="--layers 2 --batch 32 --lr 3e-3 --max-steps 8480 --milestones 2000,4000,6000"
    curve trDemo --trainer --group-by-length --fp32 $demo &
    curve trDemoSeed1 --trainer --group-by-length --fp32 --seed 1 $demo &
    curve trRandomOrder --trainer --fp32 $demo &
    curve plainFp32 --fp32 $demo &
    curve plainBf16 $demo &
    curve plainB64P40 --layers 2 --batch 64 --lr 3e-3 --max-steps 5655 --milestones 2830,4240 &
    curve trDemoP40 --trainer --group-by-length --fp32 --layers 2 --batch 32 --lr 3e-3 \
        --max-steps 11310 --milestones 4000,8480 &
elif [ "${CURVES}" = small-batch ]; then
    # Random order, fp32, 2 blocks: batch 16 against 32, a higher learning rate, a second seed,
    # and 40 passes, to pick a CPU recipe that copies more formulas in about an hour.
    curve b16 --fp32 --layers 2 --batch 16 --lr 3e-3 --max-steps 16965 --milestones 11310 &
    curve b16lr2e-3 --fp32 --layers 2 --batch 16 --lr 2e-3 --max-steps 16965 --milestones 11310 &
    curve b32lr5e-3 --fp32 --layers 2 --batch 32 --lr 5e-3 --max-steps 8480 --milestones 5655 &
    curve b32seed1 --fp32 --layers 2 --batch 32 --lr 3e-3 --max-steps 8480 --seed 1 \
        --milestones 5655 &
    curve b32p40 --fp32 --layers 2 --batch 32 --lr 3e-3 --max-steps 11310 --milestones 8480 &
else
    # 565 steps of 16 are one pass over MP-20 val's 9,047 crystals.
    curve b32p20 --layers 4 --batch 32 --lr 3e-3 --max-steps 5650 &
    curve b64p20 --layers 4 --batch 64 --lr 3e-3 --max-steps 2830 &
    curve b64p20L2 --layers 2 --batch 64 --lr 3e-3 --max-steps 2830 &
    curve b128p20 --layers 4 --batch 128 --lr 4e-3 --max-steps 1415 &
    curve b256p20 --layers 4 --batch 256 --lr 6e-3 --max-steps 710 &
    curve b64p60 --layers 4 --batch 64 --lr 3e-3 --max-steps 8500 &
fi
wait
# One file of rows and one of logs: a device call brings back only a few files.
cat "$OUT"/curve_*.jsonl >"$OUT/curves.jsonl" && rm -f "$OUT"/curve_*.jsonl
for log in "$OUT"/curve_*.log; do
    echo "== $log"
    grep -E '"step"' "$log"
    grep -vE '"step"' "$log" | tail -n 8
done >"$OUT/curves.log" && rm -f "$OUT"/curve_*.log
grep -hE "Error|Traceback" "$OUT/curves.log" | sort | uniq -c | tail -n 20
grep -E '"step"' "$OUT/curves.log" | cut -c 1-260
