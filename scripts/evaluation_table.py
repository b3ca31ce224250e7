"""One markdown table from several `flashmd evaluate` summaries (summary.json files).

    python scripts/evaluation_table.py runs/heldout/report-*/summary.json

Rows: each compared condition of each summary (labelled by its report directory); columns: the
difference of every judged metric, with its status (SKIP when not judged).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = {
    "temperature": ("T rel", "{:+.3f}"),
    "potential_energy": ("V meV/atom", "{:+.1f}"),
    "rdf": ("RDF", "{:.3f}"),
    "diffusion": ("D rel", "{:+.2f}"),
    "equipartition": ("T spread", "{:.3f}"),
    "nve_drift": ("drift eV/atom/ps", "{:.1e}"),
    "overlaps": ("overlaps", "{:.0f}"),
    "nan_count": ("NaN", "{:.0f}"),
    "fallback_fraction": ("fallbacks", "{:.4f}"),
}


def cell(metric: dict) -> str:
    _, style = COLUMNS[metric["key"]]
    value = metric["rollout"] if metric["key"] in ("nve_drift",) else metric["difference"]
    if metric["status"] == "skip" or value is None:
        return "-"
    mark = "" if metric["status"] == "pass" else " FAIL"
    return style.format(value) + mark


def main(paths: list[str]) -> str:
    header = ["run", "condition", *(name for name, _ in COLUMNS.values())]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for path in paths:
        summary = json.loads(Path(path).read_text())
        run = Path(path).parent.name.removeprefix("report-")
        for condition in summary["conditions"]:
            metrics = {m["key"]: m for m in condition["metrics"]}
            cells = [cell(metrics[k]) if k in metrics else "-" for k in COLUMNS]
            lines.append("| " + " | ".join([run, condition["label"], *cells]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))
