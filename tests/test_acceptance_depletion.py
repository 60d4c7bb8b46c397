"""Depletion found in stored series for acceptance criterion 1: the live detector over the
store's DO windows and the stored CER; a foam blip is not depletion."""

from __future__ import annotations

from pathlib import Path

import pytest

from bptwin.database.reading import Reading
from bptwin.database.timeseries.embedded import EmbeddedStore
from bptwin.twin.stored_depletion import detect_depletion

START = 1_772_438_400.0
RISE_AT = 7200  # s after inoculation the DO starts to climb: 30 % -> 90 % in 10 min


def do_value(second: int, *, blip: bool) -> float:
    if blip and 3600 <= second < 3660:  # a foam collapse: DO jumps for a minute
        return 90.0
    if second < RISE_AT:
        return 30.0
    return min(90.0, 30.0 + 60.0 * (second - RISE_AT) / 600.0)


@pytest.fixture
def store(tmp_path: Path):
    with EmbeddedStore(tmp_path / "ts.sqlite") as store:
        yield store


def test_the_do_spike_is_found_and_a_blip_is_not(store: EmbeddedStore) -> None:
    store.write([Reading(START + s, "R1", "do", do_value(s, blip=True)) for s in range(3 * 3600)])
    store.flush()
    found = detect_depletion(store, "R1", START, START + 3 * 3600)
    # DO-only (no stored CER): the crossing of 80 %, 500 s into the rise
    assert found == pytest.approx(RISE_AT + 500, abs=30)
    assert detect_depletion(store, "R1", START, START + RISE_AT) is None  # blip only


def test_a_cer_that_does_not_collapse_vetoes_the_spike(store: EmbeddedStore) -> None:
    store.write([Reading(START + s, "R1", "do", do_value(s, blip=False)) for s in range(3 * 3600)])
    # the shadow's CER per window end: still at its peak while the DO rises (aeration change)
    store.write([Reading(START + t, "R1", "cer", 40.0) for t in range(30, 3 * 3600, 30)])
    store.flush()
    assert detect_depletion(store, "R1", START, START + 3 * 3600) is None
    # The same DO with a CER that collapses at the rise (R2: a store keeps the first value).
    store.write([Reading(START + s, "R2", "do", do_value(s, blip=False)) for s in range(3 * 3600)])
    cer = [Reading(START + t, "R2", "cer", 40.0 if t < RISE_AT else 2.0)
           for t in range(30, 3 * 3600, 30)]  # fmt: skip
    store.write(cer)
    store.flush()
    found = detect_depletion(store, "R2", START, START + 3 * 3600)
    assert found == pytest.approx(RISE_AT + 500, abs=30)
