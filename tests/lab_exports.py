"""Lab exports made here, in the shapes real fermentation software writes (never copied data).

From a simulated batch (its readings and samples, never its truth) this writes what a
university lab's system exports for one run:

* ``online.CSV``: every 5 min, Latin-1, ';'-separated, decimal commas (and integers without a
  decimal part in the same column), a "Task" line and an export line before the header, a unit
  row under it, local date-times (``24.11.2020 10:24:14``), absolute pressure in mbar, air in
  mL/min;
* ``CO2.dat``: every minute, TAB-separated, decimal points, seconds since the analyser's own
  start (five minutes before inoculation);
* ``offline.csv``: dry weights only (no OD600), ';' and decimal commas, local times.

There is no off-gas O₂ column: the lab has a CO₂ analyser only. ``import_map_text`` is the
matching import map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from bptwin.twin.dataset import BatchRecord

ZONE = ZoneInfo("Europe/Berlin")
LOCAL_FORMAT = "%d.%m.%Y %H:%M:%S"
CO2_LEAD_S = 300.0  # the analyser was started 5 min before inoculation
ATM_MBAR = 1013.25


@dataclass(frozen=True)
class LabRun:
    """What was written, and what an import must get back."""

    folder: Path
    inoculation: datetime  # local, aware
    analyser_start: datetime
    online_rows: int
    co2_rows: int
    comma_cells: int  # cells of the DO column written with a decimal comma
    integer_cells: int  # cells of the same column written without a decimal part


def local(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=ZONE)


def local_text(moment: datetime) -> str:
    return moment.strftime(LOCAL_FORMAT)


def german(value: float, digits: int = 2) -> str:
    """A number as the lab's German export writes it: '5,01', '98' (no decimal part when whole)."""
    if not math.isfinite(value):
        return ""
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text.replace(".", ",")


def rows_every(frame: pd.DataFrame, every_s: float) -> pd.DataFrame:
    keep = np.isclose(np.mod(frame["time_s"].to_numpy(float), every_s), 0.0)
    return frame[keep]


def write_lab_run(
    folder: Path,
    record: BatchRecord,
    *,
    start: datetime | None = None,
    online_every_s: float = 300.0,
    co2_every_s: float = 60.0,
    od600: bool = False,
) -> LabRun:
    """Write the three exports of ``record`` into ``folder`` (see the module docstring).

    ``start`` re-stamps the run to another local inoculation time (e.g. across a DST change).
    ``od600`` adds an OD600 column to the samples (left empty for the last sample).
    """
    assert record.sensors is not None and record.samples is not None
    folder.mkdir(parents=True, exist_ok=True)
    sensors = record.readings().copy()
    shift = 0.0 if start is None else start.timestamp() - record.start_timestamp
    sensors["timestamp"] = sensors["timestamp"] + shift
    inoculation = local(record.start_timestamp + shift)

    online = rows_every(sensors, online_every_s)
    do_cells = [german(v, 1) for v in online["do"]]
    lines = [
        "Task: Fermentation FB-2020-11 (Pichia, Glycerin)",
        f"Export;{local_text(inoculation)};Benutzer: Müller",
        "Datum/Uhrzeit;pH;pO2;T Reaktor;Drehzahl;Begasung;O2 Zufuhr;Druck;Base;Trübung",
        "[dd.mm.yyyy hh:mm:ss];[-];[%];[°C];[rpm];[mL/min];[mL/min];[mbar];[mL];[AU]",
    ]
    for (_, row), do_cell in zip(online.iterrows(), do_cells, strict=True):
        lines.append(
            ";".join(
                [
                    local_text(local(float(row["timestamp"]))),
                    german(row["ph"], 3),
                    do_cell,
                    german(row["temp_broth"], 2),
                    german(row["stirrer_speed"], 0),
                    german(row["air_flow"] * 1000.0, 1),
                    german(row["o2_flow"] * 1000.0, 1),
                    german(row["pressure"] * 1000.0 + ATM_MBAR, 1),
                    german(row["base_total"], 2),
                    german(row["od_probe"], 3),
                ]
            )
        )
    (folder / "online.CSV").write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))

    analyser_start = inoculation - timedelta(seconds=CO2_LEAD_S)
    co2 = rows_every(sensors, co2_every_s)
    co2_lines = ["Time [s]\tCO2 [%]"]
    for _, row in co2.iterrows():
        elapsed = float(row["timestamp"]) - analyser_start.timestamp()
        co2_lines.append(f"{elapsed:.0f}\t{row['offgas_co2']:.4f}")
    (folder / "CO2.dat").write_text("\n".join(co2_lines) + "\n", encoding="ascii")

    samples = record.samples
    sample_lines = ["Probe;Probenahme;BTM [g/L];Bemerkung" + (";OD600" if od600 else "")]
    for index, row in enumerate(samples.itertuples(index=False), start=1):
        taken = local(float(row.timestamp) + shift)
        line = f"P{index};{local_text(taken)};{german(float(row.dcw_g_l), 3)};" + (
            "Endprobe" if row.kind == "depletion" else ""
        )
        if od600:
            line += ";" + (german(float(row.od600), 3) if index < len(samples) else "")
        sample_lines.append(line)
    (folder / "offline.csv").write_bytes(("\n".join(sample_lines) + "\n").encode("latin-1"))
    comma = sum("," in cell for cell in do_cells)
    return LabRun(
        folder,
        inoculation,
        analyser_start,
        len(online),
        len(co2),
        comma,
        sum(cell != "" and "," not in cell for cell in do_cells),
    )


def import_map_text(
    runs: dict[int, LabRun], *, initial_volume_l: float | None = 1.0, od600: bool = False
) -> str:
    """The import map of these runs, as the lab would write it (docs/dataset.md)."""
    lines = [
        'description = "Bench 2, Pichia on glycerol, CO2 analyser only"',
        'timezone = "Europe/Berlin"',
        f'time_format = "{LOCAL_FORMAT}"',
        "",
        "[files.online]",
        'path = "{folder}/online.CSV"',
        'time = "Datum/Uhrzeit"',
        "[files.online.columns]",
        '"pH" = "ph"',
        '"pO2" = "do"',
        '"T Reaktor" = "temp_broth"',
        '"Drehzahl" = "stirrer_speed"',
        '"Begasung" = { channel = "air_flow", unit = "mL/min" }',
        '"O2 Zufuhr" = { channel = "o2_flow", unit = "mL/min" }',
        '"Druck" = { channel = "pressure", unit = "mbar", offset = -1.01325 }',
        '"Base" = "base_total"',
        '"Trübung" = "od_probe"',
        "",
        "[files.co2]",
        'path = "{folder}/CO2.dat"',
        'time = { column = "Time [s]", format = "elapsed_s", start = "batch" }',
        "[files.co2.columns]",
        '"CO2 [%]" = "offgas_co2"',
        "",
        "[samples]",
        'path = "{folder}/offline.csv"',
        'time = "Probenahme"',
        "[samples.columns]",
        '"BTM [g/L]" = "dcw_g_l"',
        *(['"OD600" = "od600"'] if od600 else []),
        "",
        "[process]",
        "assumed_rq = 0.7",
    ]
    if initial_volume_l is not None:
        lines.append(f"initial_volume_l = {initial_volume_l}")
    for number, run in sorted(runs.items()):
        lines += [
            "",
            "[[batches]]",
            f"number = {number}",
            f'folder = "{run.folder.name}"',
            f'inoculation = "{local_text(run.inoculation)}"',
            f'starts = {{ co2 = "{local_text(run.analyser_start)}" }}',
        ]
    return "\n".join(lines) + "\n"
