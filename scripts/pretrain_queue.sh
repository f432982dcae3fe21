#!/usr/bin/env bash
# The CPU pretraining queue of the shipped starts, one network after the other on one thread (the
# machine has two cores). Each run appends to benchmarks/results/training-logs/pretrain_<method>.log;
# rerun with RESUME=1 to continue every run from its checkpoint (fastdenoise/weights/<method>_start.pt.ckpt).
#   nohup bash scripts/pretrain_queue.sh > /tmp/queue.log 2>&1 &
# Budgets: noise2same 35 min, then apr 40, zsn2n 10, blind2grad 30 (64^2 crops), nb2nb 20.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=${RESUME:+--resume}
run() {  # method minutes [extra args]
  local m=$1 min=$2; shift 2
  $PY scripts/pretrain.py --method "$m" --iters 100000 --minutes "$min" --threads 1 \
      --checkpoint-every 100 --log-every 200 $R "$@" >> "benchmarks/results/training-logs/pretrain_$m.log" 2>&1
}
for m in ${ONLY:-noise2same apr zsn2n blind2grad nb2nb}; do
  case $m in
    noise2same) run noise2same 35 ;;
    apr) run apr 40 ;;
    zsn2n) run zsn2n 10 ;;
    blind2grad) run blind2grad 30 --crop 64 ;;
    nb2nb) run nb2nb 20 ;;
  esac
done
