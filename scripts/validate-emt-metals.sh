#!/usr/bin/env bash
# Held-out validation of a model on the conditions of data/emt-metals-heldout.yaml (none of them is
# in the training recipe): reference MD with asap3 EMT at 2 fs, then flashmd from each reference's
# first frame with the same Langevin thermostat at 32 and 64 fs, judged by flashmd evaluate; and
# one NVE run for the energy drift. Every step resumes when run again.
#
#   scripts/validate-emt-metals.sh [MODEL] [OUT]      (defaults: emt-metals runs/heldout)
#   STRIDES=10000 JOBS=2 DEVICE=cpu                   (environment overrides)
#   ONLY='T750-32fs|T1400'                            (runs whose name matches, grep -E)
#
# Writes OUT/summary.md: one table of every run, then each evaluate table in full.
set -euo pipefail
model=${1:-emt-metals}
out=${2:-runs/heldout}
strides=${STRIDES:-10000}
jobs=${JOBS:-2}
device=${DEVICE:-cpu}
mkdir -p "$out"
flashmd generate data/emt-metals-heldout.yaml -o "$out/reference.zarr" --quiet

# temperature_K stride_fs ensemble: the five held-out conditions at 32 and 64 fs, and NVE; the
# 256-atom Ni runs (2.4x the cost of the others) last
runs="750 32 langevin
800 32 langevin
2000 32 langevin
1400 32 langevin
750 64 langevin
800 64 langevin
2000 64 langevin
1400 64 langevin
750 64 nve
900 32 langevin
900 64 langevin"

if [ -n "${ONLY:-}" ]; then
    runs=$(echo "$runs" | awk '{print $0, "T"$1"-"$2"fs-"$3}' | grep -E -- "$ONLY" | cut -d' ' -f1-3)
fi

one() {
    local temperature=$1 stride=$2 ensemble=$3
    local name="T${temperature}-${stride}fs-${ensemble}"
    local n=$strides
    [ "$ensemble" = nve ] && n=$((strides / 5))
    OMP_NUM_THREADS=1 flashmd md --start-from "$out/reference.zarr" --temperature-K "$temperature" \
        --ensemble "$ensemble" --friction-per-fs 0.01 --model "$model" --stride-fs "$stride" \
        --strides "$n" --device "$device" --quiet -o "$out/$name.zarr" > "$out/$name.md.log"
    # Langevin runs: V of the rollout frames from the reference calculator (where the dynamics
    # went); NVE: the stored V of the model, which the energy filter conserves
    local energy=reference
    [ "$ensemble" = nve ] && energy=stored
    OMP_NUM_THREADS=1 flashmd evaluate --reference "$out/reference.zarr" --rollout "$out/$name.zarr" \
        --energy "$energy" --out "$out/report-$name" --quiet > "$out/$name.txt" || true
}
export -f one
export out strides model device
echo "$runs" | xargs -P "$jobs" -L 1 bash -c 'one "$@"' _

{
    echo "# $model on held-out conditions ($strides strides; NVE run $((strides / 5)))"
    echo
    python "$(dirname "$0")/evaluation_table.py" "$out"/report-*/summary.json
    for name in $(echo "$runs" | awk '{print "T"$1"-"$2"fs-"$3}'); do
        echo
        echo "## $name"
        echo
        echo '```'
        tail -n 1 "$out/$name.md.log"
        cat "$out/$name.txt"
        echo '```'
    done
} > "$out/summary.md"
echo "summary: $out/summary.md"
