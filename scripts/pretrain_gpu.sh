#!/usr/bin/env bash
# `make gpu-pretrain`: one GPU window (one command of at most 10 minutes on a cold H100/H200; python3 with
# torch and Triton preinstalled, run from the tree) continues every shipped start on the GPU and keeps a
# result only where it beats that start on the held-out crop:
#   - nb2nb, noise2same, apr, blind2grad, zsn2n: 50 s of dataset-mode training each from the shipped start
#     (scripts/pretrain.py --init start --accept start), each under an 80 s limit;
#   - P2N: 60 s more supervised training of the shipped U-Net (fresh cosine schedule, another data seed),
#     under a 90 s limit, kept only if it beats the shipped weights (--accept-over-init).
# At most 5 x 80 + 90 = 490 s. Weights and logs go to $FASTDENOISE_OUT (default out/gpu-starts); under the
# device tool ($OUT set, which brings back at most 8 files) they are also packed into $OUT/gpu-starts.tar.
# A result that did not beat its start is left as <name>.rejected. Copy the kept *.pt files into
# fastdenoise/weights/ to ship them (docs/STARTS.md).
set -u
cd "$(dirname "$0")/.."
FASTDENOISE_OUT=${FASTDENOISE_OUT:-out/gpu-starts}
export FASTDENOISE_OUT
mkdir -p "$FASTDENOISE_OUT"
export PYTHONPATH=.
unset TRITON_INTERPRET
status=0
for m in nb2nb noise2same apr blind2grad zsn2n; do
  timeout -s INT -k 10 80 python3 scripts/pretrain.py --method "$m" --device cuda --iters 100000 --minutes 0.83 \
      --init start --accept start --checkpoint-every 500 --log-every 200 > "$FASTDENOISE_OUT/pretrain_$m.log" 2>&1 \
      || { echo "$m: exit $?" >> "$FASTDENOISE_OUT/pretrain_failures.log"; status=1; }
  rm -f "$FASTDENOISE_OUT/${m}_start.pt.ckpt"
done
timeout -s INT -k 10 90 python3 scripts/pretrain_p2n.py --device cuda --init fastdenoise/weights/unet_n2n_gauss.pt \
    --accept-over-init --seed 2 --iters 20000 --batch 16 --patch 96 --max-minutes 1.0 \
    --out "$FASTDENOISE_OUT/unet_n2n_gauss.pt" > "$FASTDENOISE_OUT/pretrain_p2n.log" 2>&1 \
    || { echo "p2n: exit $?" >> "$FASTDENOISE_OUT/pretrain_failures.log"; status=1; }
rm -f "$FASTDENOISE_OUT/unet_n2n_gauss.pt.state"
ls -la "$FASTDENOISE_OUT"
if [ -n "${OUT:-}" ]; then
  tar -cf "$OUT/gpu-starts.tar" -C "$FASTDENOISE_OUT" .
fi
exit $status
