#!/usr/bin/env bash
# Does the bench's headline reproduce on another CPU kernel set? Runs configs/bench.yaml twice into
# two results folders — once with the machine's own kernels, once with torch's ATen kernels and
# oneDNN limited to another instruction set (AVX2, or the scalar `default` where AVX2 is already the
# machine's best) — writes both reports, and compares them with benchmarks/compare_conclusions.py:
# the same config (execution keys aside), an exact test of each configuration's success counts
# (minP-adjusted across configurations), then positive evidence from the pre-registered headline
# (config.yaml's `headline:`): every headline configuration's rates equivalent within 1/3 (exact 90%
# interval of the difference) and every headline contrast decided alike in both. Exit 0 only when every
# pair AGREEs; 1 when a pair DISAGREEs (counts that differ), else 3 when one is INCONCLUSIVE (a
# configuration missing, no headline, a rate not shown equivalent — at 12 seeds any count from 4 to 8
# of 12, or any two counts that differ — or a contrast decided in one folder only), 2 on bad input or
# differing configs. Takes twice the bench's run time; THIRD=1 adds a third run with the scalar
# kernels (ATen `default`, oneDNN SSE4.1) and compares every pair (three times the bench's run time).
# `benchmarks/check_power.py ROOT/native` measures the check's error rates on independent folders drawn
# at ROOT/native's rates.
#
#   benchmarks/reproduce.sh [OUT_ROOT]        # default results/reproduce: OUT_ROOT/native, OUT_ROOT/other
#   THIRD=1 benchmarks/reproduce.sh           # also OUT_ROOT/scalar
#   PY=path/to/python benchmarks/reproduce.sh # default .venv/bin/python (make install)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROOT=${1:-results/reproduce}
CONFIG=${CONFIG:-configs/bench.yaml}
TIMEFORMAT='  %R s wall, %U s user + %S s system CPU'

native=$("$PY" -c "import torch; print(torch.backends.cpu.get_cpu_capability())")
if [ "$native" = "AVX2" ] || [ "$native" = "DEFAULT" ] || [ "$native" = "default" ]; then
    other_aten=default other_onednn=SSE41
else
    other_aten=avx2 other_onednn=AVX2
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores;" \
     "torch $("$PY" -c 'import torch; print(torch.__version__)'); native capability $native"

run() {   # run NAME [ENV=VALUE ...]: the bench and its report into ROOT/NAME
    local name=$1; shift
    echo "== $name: ${*:-the native kernels}"
    time env "$@" "$PY" -m harness run "$CONFIG" --out "$ROOT/$name" --quiet
    env "$@" "$PY" -m harness report "$ROOT/$name" > /dev/null
    "$PY" -c "from harness.records import load; r = load('$ROOT/$name').runs; \
print('  trials:', len(r), '| cpu_capability recorded by the runs:', sorted(r['cpu_capability'].dropna().unique()), \
'| train_s summed:', round(float(r['train_s'].sum())), 's')"
}

compare() {   # compare A B; remembers the worst verdict: DISAGREE (1) over bad input (2) over INCONCLUSIVE (3)
    echo "== $1 vs $2"
    local rc=0
    "$PY" benchmarks/compare_conclusions.py "$ROOT/$1" "$ROOT/$2" --json "$ROOT/comparison_$1_$2.json" || rc=$?
    if [ "$rc" = 1 ] || { [ "$rc" = 2 ] && [ "$status" != 1 ]; } || { [ "$rc" = 3 ] && [ "$status" = 0 ]; }; then
        status=$rc
    fi
}

status=0
run native
run other ATEN_CPU_CAPABILITY=$other_aten ONEDNN_MAX_CPU_ISA=$other_onednn
compare native other
if [ "${THIRD:-0}" = 1 ] && [ "$other_aten" != default ]; then
    run scalar ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41
    compare native scalar
    compare other scalar
fi
exit $status
