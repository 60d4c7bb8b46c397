"""Import benchmark: `bptwin import` of a 26 h lab run, and its CO₂-only CER.

A 26 h simulated batch is written as a lab exports it (tests/lab_exports.py: Latin-1, decimal
commas, title and unit rows, local times, 5 min online values, 1 min CO₂ counted from the
analyser's start, dry-weight samples, no off-gas O₂), and once more as a 1 Hz export of every
channel (93 600 rows × 19 columns, the heaviest shape). Only ``import_lab`` is timed.

The CO₂-only CER of the imported run is then compared with a hand calculation written out
here from docs/features.md ("CO₂ analyser only": the inlet flows lagged by the gas path, then
the one-step inert balance at the assumed RQ), and with the simulator's true CER and total CO₂.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HOURS = 26.0
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _batch():
    from bptwin.twin.campaign import simulate_campaign_batch
    from bptwin.twin.sim_config import SimulationConfig

    base = replace(SimulationConfig(), after_depletion_h=HOURS)
    return simulate_campaign_batch(10, seed=7, base=base, hours=HOURS)


def _one_hz_export(folder: Path, record) -> str:
    """Every channel every second, written the German way (';', decimal comma, Latin-1)."""
    from tests.lab_exports import LOCAL_FORMAT, local

    sensors = record.readings()
    names = [c for c in sensors.columns if c not in ("time_s", "timestamp")]
    stamps = [local(t).strftime(LOCAL_FORMAT) for t in sensors["timestamp"]]
    columns = [
        np.char.replace(np.char.mod("%.4f", sensors[n].to_numpy(float)), ".", ",") for n in names
    ]
    lines = ["Export 1 Hz;" + ";" * (len(names) - 1), "Zeit;" + ";".join(names)]
    for row, stamp in enumerate(stamps):
        lines.append(stamp + ";" + ";".join(str(c[row]).replace("nan", "") for c in columns))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "all.csv").write_bytes("\n".join(lines).encode("latin-1"))
    return "\n".join(
        [
            'timezone = "Europe/Berlin"',
            f'time_format = "{LOCAL_FORMAT}"',
            "[files.all]",
            'path = "{folder}/all.csv"',
            'time = "Zeit"',
            "[files.all.columns]",
            *[f'"{n}" = "{n}"' for n in names],
            "[[batches]]",
            "number = 10",
            f'folder = "{folder.name}"',
            f'inoculation = "{local(record.start_timestamp).strftime(LOCAL_FORMAT)}"',
        ]
    )


def bench_import_26h() -> list[dict]:
    from bptwin.twin.dataset import read_dataset
    from bptwin.twin.features import feature_table
    from bptwin.twin.lab_import import import_lab
    from bptwin.twin.offgas import MOLAR_VOLUME_STP_L, Y_CO2_AIR
    from bptwin.twin.process_inputs import feature_config_for
    from tests.lab_exports import import_map_text, write_lab_run

    record = _batch()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run = write_lab_run(root / "lab" / "Lauf_10", record)
        (root / "lab" / "lab.toml").write_text(
            import_map_text({10: run}, initial_volume_l=None).replace("number = 16", "number = 10")
        )
        started = time.perf_counter()
        result = import_lab(root / "lab" / "lab.toml", root / "lab-dataset")
        lab_s = time.perf_counter() - started
        rows.append(
            {
                "benchmark": "import 26 h lab run (3 files)",
                "value": lab_s,
                "unit": "s",
                "note": f"online {run.online_rows} rows @5 min, CO2 {run.co2_rows} @1 min, "
                f"{len(record.samples)} samples",
            }
        )
        map_text = _one_hz_export(root / "hz" / "run", record)
        (root / "hz" / "hz.toml").write_text(map_text)
        started = time.perf_counter()
        import_lab(root / "hz" / "hz.toml", root / "hz-dataset")
        hz_s = time.perf_counter() - started
        rows.append(
            {
                "benchmark": "import 26 h 1 Hz export (all channels)",
                "value": hz_s,
                "unit": "s",
                "note": f"{len(record.sensors)} rows × {len(record.channels)} channels, "
                "Latin-1, decimal comma",
            }
        )
        imported = read_dataset(root / "lab-dataset").batch(10)
        table = feature_table(imported.readings(), feature_config_for(imported))
    assert result.batches
    # Hand calculation, written out here from docs/features.md: the inlet flows lagged by the
    # gas path (first order, 55 s, per 30 s window), then the CO₂-only balance.
    sensors = imported.sensors
    ends = table["window_end"].to_numpy(float)
    held = sensors.set_index("timestamp")[["air_flow", "o2_flow", "offgas_co2"]].ffill()
    at = held.reindex(ends - 1.0, method="ffill")  # the last value seen in each window
    air, o2, co2 = (at[c].to_numpy(float) for c in ("air_flow", "o2_flow", "offgas_co2"))
    alpha = 30.0 / (55.0 + 30.0)
    for flow in (air, o2):
        for k in range(1, len(flow)):
            flow[k] = flow[k - 1] + alpha * (flow[k] - flow[k - 1])
    f_in = (air + o2) / MOLAR_VOLUME_STP_L * 60.0
    y_in = air * Y_CO2_AIR / (air + o2)
    y_out = co2 / 100.0
    rq = imported.process.get("assumed_rq", 0.7)
    f_out = f_in * (1 - y_in + y_in / rq) / (1 - y_out * (1 - 1 / rq))
    hand = (f_out * y_out - f_in * y_in) * 1000.0 / 1.0  # mmol/L/h in 1 L
    cer = table["cer"].to_numpy(float)
    growing = (hand > 2.0) & np.isfinite(cer)
    deviation = np.abs(cer[growing] / hand[growing] - 1)
    rows.append(
        {
            "benchmark": "CO2-only CER vs hand calculation",
            "value": float(np.max(deviation)) * 100,
            "unit": "% max",
            "note": f"{int(growing.sum())} windows, RQ {rq}; "
            f"median {np.median(deviation) * 100:.2g} %",
        }
    )
    truth = record.sensors
    true_cer = np.interp(ends, truth["timestamp"], truth["truth_cer_mmol_l_h"])
    live = true_cer > 2.0
    smooth = table["cer_smooth"].to_numpy(float)
    total_error = table["cum_co2_mmol_per_l"].iloc[-1] / truth["truth_co2_cum_mmol"].iloc[-1] - 1
    rows.append(
        {
            "benchmark": "CO2-only CER vs simulator truth",
            "value": float(np.corrcoef(smooth[live], true_cer[live])[0, 1]),
            "unit": "r",
            "note": f"median error {np.median(smooth[live] / true_cer[live] - 1) * 100:+.1f} %, "
            f"total CO2 {total_error * 100:+.1f} %",
        }
    )
    return rows


if __name__ == "__main__":
    for row in bench_import_26h():
        print(row)
