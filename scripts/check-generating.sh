#!/usr/bin/env bash
# The checks of a symplectic generating function (issue #21) that the emt-metals card reports,
# for one checkpoint, one after the other on one thread:
#   1. the demo's condition at 32 fs under Bussi (flashmd demo --stride-fs 32): T, V, RDF,
#      frequency against reference MD, and solver iterations;
#   2. NVE without the filter, 1000 strides at 32 and at 16 fs from the held-out 750 K Cu frame:
#      drift of K + V, mean T against exact NVE from the same frame (scripts/nve_check.py);
#   3. time reversal at 32 fs on a crystal, an alloy and a slab (scripts/time_reversal.py);
#   4. the held-out Al 1400 K melt, 500 strides of 32 fs under Langevin (flashmd evaluate): a
#      generating function can hold the solids and still fail the liquid (a one-layer W did).
# Usage: bash scripts/check-generating.sh MODEL OUTDIR [SOLVER_TOLERANCE_A]
# (the tolerance, default flashmd's, applies to the NVE runs and the time reversal; the demo
# takes flashmd's default).
# Needs runs/emt-metals.zarr (flashmd generate data/emt-metals.yaml -o runs/emt-metals.zarr);
# makes runs/heldout/reference.zarr when it is missing. About an hour per model on one core.
set -euo pipefail
model=${1:?usage: check-generating.sh MODEL OUTDIR}
out=${2:?usage: check-generating.sh MODEL OUTDIR}
tolerance=(${3:+--solver-tolerance-A "$3"})
ref=runs/heldout/reference.zarr
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
[ -d "$ref" ] || flashmd generate data/emt-metals-heldout.yaml -o "$ref"

echo "== demo, 32 fs, Bussi"
flashmd demo -o "$out/demo32" --model "$model" --stride-fs 32 --quiet | tail -n 25 || true

for stride in 32 16; do
    echo "== NVE, no filter, $stride fs, 1000 strides"
    flashmd md --start-from "$ref" --temperature-K 750 --ensemble nve --no-filter \
        --model "$model" --stride-fs "$stride" --strides 1000 --symplectic "${tolerance[@]}" \
        -o "$out/nve$stride.zarr" --quiet
    python scripts/nve_check.py "$out/nve$stride.zarr" --exact-nve "$ref"
done

echo "== time reversal, 32 fs"
python scripts/time_reversal.py "$model" "$ref:Cu-750" "$ref:Cu3Au" \
    runs/emt-metals.zarr:Pt100-slab_900K_r0 --stride-fs 32 --states 2 ${3:+--tolerance-A "$3"}

echo "== held-out Al 1400 K melt, 32 fs, Langevin"
flashmd md --start-from "$ref" --temperature-K 1400 --ensemble langevin --model "$model" \
    --stride-fs 32 --strides 500 --symplectic "${tolerance[@]}" -o "$out/al-melt.zarr" --quiet
flashmd evaluate --reference "$ref" --rollout "$out/al-melt.zarr" --out "$out/al-melt-report" \
    --energy reference --no-figures --quiet || true
sed -n '/^| condition/,/^$/p' "$out/al-melt-report/report.md"
