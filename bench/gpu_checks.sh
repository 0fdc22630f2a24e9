#!/bin/bash
# The speed issue's GPU checks as one prepared run (a lent GPU gives a session 15 minutes of device
# time, all tries together; one command may run 10 minutes). Each step has its own time limit, so a
# slow build cannot eat the next step; every step's output goes to $OUT (the device tool brings it back).
#
#   1. our CUDA extension: build + parity (tests/test_cuda_ext.py)                       ~1 min
#   2. ours against NVIDIA's release code, same weights and latents (bench/vs_release.py):
#      T-1024 and R-1024, batch 1 and 8, fp32 and fp16 layers; includes the release's plugin build
#   3. our generator bench on CUDA, the table of bench/RESULTS.md (bench/generator.py)
#
# Needs the release code in the git-ignored third_party/stylegan3 (see bench/vs_release.py); with the
# device tool: run(command="bash bench/gpu_checks.sh", carry=["third_party"], timeout_s=590).
# The video row (bench/video.py --device cuda --model ffhq-random) also needs PyAV, dlib and dlib's
# landmark model there, which the device image lacks (the landmark model alone is ~100 MB, over what
# a call can carry); it is not part of this run.
set -u
out=${OUT:-gpu_checks_out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    git log --oneline -1 2>/dev/null
} 2>&1 | tee "$out/machine.txt"

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*" | tee -a "$out/steps.txt"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$out/steps.txt"
}

step parity 150 python3 -m pytest -q tests/test_cuda_ext.py
step vs_release 300 python3 bench/vs_release.py --device cuda --configs T1024,R1024 --batches 1,8 \
    --precisions fp32,fp16 --repeat 10
step generator 100 python3 bench/generator.py --configs T1024,R1024 --batches 1,8 --impls cuda --repeat 5 \
    --threads 16
