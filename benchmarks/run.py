"""Run every ``benchmarks/bench_*.py`` and print one table.

Each module exposes functions ``bench_<name>() -> list[dict]`` with the keys
benchmark, value, unit and note. ``python benchmarks/run.py [substring ...]`` runs only
the benchmarks whose module or function name contains one of the substrings.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def discover(filters: list[str]) -> list[tuple[str, object]]:
    found = []
    for path in sorted(HERE.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(f"benchmarks.{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name in sorted(vars(module)):
            if name.startswith("bench_") and callable(getattr(module, name)):
                label = f"{path.stem}.{name}"
                if not filters or any(f in label for f in filters):
                    found.append((label, getattr(module, name)))
    return found


def format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def main(argv: list[str]) -> int:
    rows: list[dict[str, object]] = []
    failures = 0
    for label, function in discover(argv):
        started = time.perf_counter()
        print(f"running {label} …", file=sys.stderr, flush=True)
        try:
            results = function()
        except Exception as exc:  # a broken benchmark must not hide the others
            failures += 1
            traceback.print_exc()
            results = [{"benchmark": label, "value": "FAILED", "unit": "", "note": repr(exc)}]
        elapsed = time.perf_counter() - started
        print(f"  done in {elapsed:.1f} s", file=sys.stderr, flush=True)
        rows.extend(results)
    headers = ("benchmark", "value", "unit", "note")
    table = [[format_value(row.get(key, "")) for key in headers] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in table)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    out_dir = HERE.parent / "bench-results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(rows, indent=2, default=str))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
