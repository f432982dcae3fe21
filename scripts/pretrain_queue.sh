#!/usr/bin/env bash
# The CPU pretraining queue of the shipped starts, one network after the other on one thread (the
# machine has two cores). Each run appends to scripts/pretrain_<method>.log; rerun with RESUME=1 to
# continue every run from its checkpoint (fastdenoise/weights/<method>_start.pt.ckpt).
#   nohup bash scripts/pretrain_queue.sh > /tmp/queue.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=${RESUME:+--resume}
run() {  # method minutes [extra args]
  local m=$1 min=$2; shift 2
  $PY scripts/pretrain.py --method "$m" --iters 100000 --minutes "$min" --threads 1 \
      --checkpoint-every 100 --log-every 200 $R "$@" >> "scripts/pretrain_$m.log" 2>&1
}
run noise2same 35
run apr 45
run blind2grad 35 --crop 64
run nb2nb 30
