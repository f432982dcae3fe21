#!/usr/bin/env bash
# One GPU window: a start for every network, 80 s each (P2N's supervised start 90 s), into $FASTDENOISE_OUT.
# Sized for at most ~8 minutes on one H100/H200 (python3 with torch/Triton preinstalled; run from the tree).
set -u
cd "$(dirname "$0")/.."
: "${FASTDENOISE_OUT:?set FASTDENOISE_OUT to the output directory}"
mkdir -p "$FASTDENOISE_OUT"
export PYTHONPATH=.
for m in nb2nb noise2same apr blind2grad zsn2n; do
  timeout 150 python3 scripts/pretrain.py --method "$m" --device cuda --iters 100000 --minutes 1.33 \
      --checkpoint-every 500 --log-every 200 > "$FASTDENOISE_OUT/pretrain_$m.log" 2>&1 \
      || echo "$m: exit $?" >> "$FASTDENOISE_OUT/pretrain_failures.log"
done
# P2N: a further stage from the shipped start (fresh cosine schedule, another data seed), cut at 90 s
timeout 150 python3 scripts/pretrain_p2n.py --device cuda --init fastdenoise/weights/unet_n2n_gauss.pt --seed 2 \
    --iters 20000 --batch 16 --patch 96 --max-minutes 1.5 --out "$FASTDENOISE_OUT/unet_n2n_gauss.pt" \
    > "$FASTDENOISE_OUT/pretrain_p2n.log" 2>&1 || echo "p2n: exit $?" >> "$FASTDENOISE_OUT/pretrain_failures.log"
ls -la "$FASTDENOISE_OUT"
