#!/usr/bin/env bash
# Every (arm, seed) of a next-item recipe as its own process on one GPU, then one merged record.
set -u
# Usage: RECIPE=beauty_sequential [ARMS="sasrec_bce ..."] [EXTRA="--pretrain-epochs 40"] bash recipes/run_sequential_parallel.sh \
#            MAX_SECONDS_PER_RUN OUT.json
# The GPU is far from busy with one small model, so the runs share it; each run
# stops at its own early stopping or after MAX_SECONDS_PER_RUN.
RECIPE=${RECIPE:-beauty_sequential}
cd "$(dirname "$0")"
mkdir -p /tmp/parts  # earlier parts stay: a rerun of some arms replaces theirs in the merge
pids=()
for arm in ${ARMS:-popularity gru4rec sasrec_bce sasrec_sampled_softmax bert4rec}; do
  seeds=${SEEDS:-0 1 2}; [ $arm = popularity ] && seeds=0
  for seed in $seeds; do
    XLA_PYTHON_CLIENT_PREALLOCATE=false python3 "$RECIPE".py --arms $arm --seeds $seed \
      --no-write --max-seconds "$1" ${EXTRA:-} --out /tmp/parts/${arm}_$seed.json > /tmp/parts/${arm}_$seed.log 2>&1 &
    pids+=($!)
  done
done
wait "${pids[@]}"
grep -h "seed" /tmp/parts/*.log | grep -v "^W0000\|^I0000"
python3 _sequential.py merge "$2" /tmp/parts/*.json
tail -n 3 /tmp/parts/*.log | grep -i "error\|Traceback" || true
