#!/bin/bash
# Sharpening phase of the demo generator on a CUDA machine, time-boxed (a lent GPU's few minutes).
#
# Starts from the shipped generator's weights (resources/models/demo) and trains the adversarial phase
# (regression + edge + GAN, factory/training/discriminator.py) for MINUTES, with WORKERS render
# processes (about 150 faces/s each at 64 px). First times one training step at BATCH with the
# reference and the fused kernels and trains with the faster. Then, on any machine: encoder
# fine-tune (--init-from the shipped encoder), directions, package, tools/measure_demo.py (see
# resources/models/demo/MODEL_CARD.md).
#
# Usage: bash tools/gpu_sharpen_demo.sh OUT_DIR [MINUTES=8] [WORKERS=14] [BATCH=128]
#        (DEVICE=cpu for a dry run of the whole script on a machine without a GPU)
set -u
device=${DEVICE:-cuda}
out=${1:?usage: gpu_sharpen_demo.sh OUT_DIR [MINUTES] [WORKERS] [BATCH]}; minutes=${2:-8}; workers=${3:-14}
batch=${4:-128}
mkdir -p "$out"; rm -f "$out/fastest"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python3 bench/train_step.py --device "$device" --impls ref,cuda --configs demo-6L-c48 --batch "$batch" --repeat 5 \
  --threads 1 --fastest-to "$out/fastest" | tee "$out/bench.txt"
[ -s "$out/fastest" ] || { echo "no kernel implementation ran on this device (see $out/bench.txt)"; exit 3; }
impl=$(cat "$out/fastest")
echo "training with SG3_KERNELS=$impl"
SG3_KERNELS=$impl python3 main.py train-demo generator --out "$out/generator" --device "$device" \
  --init-from resources/models/demo/generator.safetensors --lr 2e-3 --edge-weight 1 --adv-weight 0.05 \
  --batch "$batch" --steps 100000000 --minutes "$minutes" --workers "$workers" --threads 1 --checkpoint-every 60 \
  2>&1 | tee "$out/generator.log" | awk 'NR % 50 == 1'
