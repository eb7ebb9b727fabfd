#!/usr/bin/env bash
# The LeNet seed re-runs of the original protocol (the tables chapter's "How far the seed alone
# moves a cell") on one CUDA GPU: nine queues of runs side by side, each queue writing its own
# results CSV (a part), merged afterwards into the seed files with `python -m lslib merge`.
#
# From the repository root, with LSLIB_DATA set and the authors' checkpoint saved as
# .cache/lenet_mnist_model.pth, or where LENET_START names (results/README.md says how):
#
#     results/mnist-lenet-original-seeds-on-gpu.sh WORKDIR [SECONDS]
#
# Parts: WORKDIR/seed<S>-<queue>.csv (+ .meta.json), logs WORKDIR/*.log, models WORKDIR/cache.
# With SECONDS, a run still going that long after the start is interrupted (Ctrl-C: its finished
# rows are kept, the same command resumes it) and nothing new starts. DEVICE (default cuda),
# PYTHON (default python3) and LSLIB_EXTRA (more arguments, e.g. --quick) change the runs;
# FIRST_ONLY=1 runs only the first run of each queue (to finish models an earlier call left).
set -u
work=${1:?usage: $0 WORKDIR [SECONDS]}
deadline=$(( $(date +%s) + ${2:-31536000} ))
mkdir -p "$work"

run() {  # run PART SEED METHODS ALPHAS BASELINES
    local left=$(( deadline - $(date +%s) ))
    if (( left < 10 )); then echo "not started (out of time): $*"; return 0; fi
    # shellcheck disable=SC2086  # LSLIB_EXTRA is a list of arguments
    timeout -s INT -k 60 "$left" "${PYTHON:-python3}" -m lslib reproduce mnist-lenet \
        --protocol original --lenet-start "${LENET_START:-.cache/lenet_mnist_model.pth}" --seed "$2" \
        --methods "$3" --alphas "$4" --baselines "$5" --attacks clean,FGSM,BIM,DeepFool \
        --n-test 1000 --device "${DEVICE:-cuda}" --threads 1 --no-progress \
        --cache "$work/cache" --out "$work/$1" ${LSLIB_EXTRA:-}
    echo "exit status $? of: $*"
}

queue() {  # queue "PART SEED METHODS ALPHAS BASELINES"...: one after another, in the background
    local log="$work/${1%% *}.log"
    if [[ ${FIRST_ONLY:-0} == 1 ]]; then set -- "$1"; fi
    ( for spec in "$@"; do
          # shellcheck disable=SC2086  # each spec is five words
          run $spec
      done ) >"$log" 2>&1 &
}

# The models the CPU runs left out, with the tables' largest gaps first in each queue.
for s in 1 2; do
    queue "seed$s-a.csv $s SBLS 0.4 none" "seed$s-a.csv $s SLS 0.4 none" \
          "seed$s-a.csv $s SLS 0.1 none"
    queue "seed$s-b.csv $s ALS 0.4 none" "seed$s-b.csv $s ALS,SLS 0.005 none"
    queue "seed$s-c.csv $s BLS,SBLS 0.005 none"
    queue "seed$s-d.csv $s none 0.1 PGD-AT"
done
# Seed 0 on the GPU beside seed 0 on the CPU (the table's): what the device alone changes.
queue "seed0-gpu.csv 0 SBLS 0.1 natural"
wait
