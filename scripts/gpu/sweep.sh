#!/usr/bin/env bash
# Device side of a sweep on a borrowed GPU machine (prepared by scripts/gpu/prepare.sh): unpacks
# the encoder, starts CUDA MPS so that many small runs share the GPU, checks one tiny run, runs
# the sweep with a deadline, and leaves everything but weights in $OUT/runs.tgz.
#   bash scripts/gpu/sweep.sh ENCODER SWEEP.yaml [sweep args: --jobs N --deadline S --only G ...]
# e.g. bash scripts/gpu/sweep.sh e5-weibo configs/sweeps/knowledge_weibo_k250.yaml --jobs 12 --deadline 420
# Back here: tar -xzf runs.tgz -C results/sweeps/ (the folder is named after the sweep file), then
# python -m knowfree sweep SWEEP.yaml --out results/sweeps/NAME --collect --table results/tables/NAME
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 ENCODER SWEEP.yaml [sweep args]" >&2; exit 2; }
enc=$1 sweep=$2; shift 2
name=$(basename "$sweep" .yaml)
: "${OUT:?the device tool sets OUT}"
export KNOWFREE_DATA_MIRROR=$PWD/.gpu/datasets KNOWFREE_CACHE=/tmp/kfcache PYTHONUNBUFFERED=1
export KNOWFREE_GIT_COMMIT=$(cat .gpu/commit) OMP_WAIT_POLICY=PASSIVE
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch,transformers;print('torch',torch.__version__,'transformers',transformers.__version__)"
# no zstd binary on the machine: pyarrow reads the stream
python3 -c "import pyarrow as pa, tarfile; tarfile.open(fileobj=pa.CompressedInputStream('.gpu/$enc.tar.zst','zstd'), mode='r|').extractall('.gpu')" || exit 3
nvidia-cuda-mps-control -d && echo "MPS on" || echo "no MPS"
timeout 120 python3 -m knowfree train configs/tiny.yaml --run-dir /tmp/smoke --no-progress \
  --set model.encoder=.gpu/$enc --set train.device=auto > "$OUT/smoke.log" 2>&1 || { tail -30 "$OUT/smoke.log"; exit 4; }
grep -o '"device": "[^"]*"' /tmp/smoke/metrics.json
python3 -m knowfree sweep "$sweep" --out "/tmp/$name" --set model.encoder=.gpu/$enc --set train.device=auto \
  "$@" > "$OUT/sweep.log" 2>&1
echo "sweep exit $?"; tail -20 "$OUT/sweep.log"
tar -czf "$OUT/runs.tgz" --exclude='*.safetensors' --exclude='checkpoints' -C /tmp "$name"
ls -la "$OUT"
