#!/usr/bin/env bash
# The same reproduction at two commits, side by side on this machine, in CPU seconds: did the code
# get slower, or is the machine another kind? (Machines of this kind differ by up to 2x, so a wall
# time from another day's machine says nothing by itself; a ratio measured in one run does.)
#
#   bench/ab_commits.sh BASE [ROUNDS]      # e.g. bench/ab_commits.sh fbcd573 2
#
# Each round runs, from an empty model cache and at one torch thread, `python -m lslib reproduce
# mnist-linear mnist-lenet --methods SLS --alphas 0.4 --baselines natural --n-test 200` at BASE (a
# git worktree) and at the working tree, at the same time (one core each), and prints each run's
# user and system CPU seconds and wall seconds (GNU time). Needs LSLIB_DATA.
set -euo pipefail
base=${1:?usage: bench/ab_commits.sh BASE [ROUNDS]}
rounds=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
LSLIB_DATA=$(cd "${LSLIB_DATA:?set LSLIB_DATA to the data folder}" && pwd)  # both trees find it
export LSLIB_DATA
old=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$old/tree" >/dev/null 2>&1 || true; rm -rf "$old"' EXIT
git -C "$root" worktree add -q --detach "$old/tree" "$base"
echo "# command: bench/ab_commits.sh $*"
echo "# base $(git -C "$root" rev-parse --short "$base"), head $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- lslib || echo ' (lslib modified)'), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
one() {  # tree tag
  local d; d=$(mktemp -d)
  (cd "$1" && /usr/bin/time -f "$2: %U user %S sys %e wall" env PYTHONPATH="$1" "$py" -m lslib \
    reproduce mnist-linear mnist-lenet --methods SLS --alphas 0.4 --baselines natural \
    --n-test 200 --threads 1 --no-progress --out "$d/o.csv" --cache "$d/cache" \
    >/dev/null 2>"$d/err" || { echo "$2: FAILED"; tail -3 "$d/err"; }; tail -1 "$d/err")
  rm -rf "$d"
}
for r in $(seq "$rounds"); do
  one "$old/tree" "round $r, base" >"$old/a" & one "$root" "round $r, head" >"$old/b"; wait
  cat "$old/a" "$old/b"
done
