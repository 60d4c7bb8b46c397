"""Sample entry driven through Pilot against the real notebook (SQLite and Postgres)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual import on
from textual.widgets import DataTable, Input, Static

from bptwin.eln.direct_notebook import DirectNotebook
from bptwin.eln.services import NotebookService
from bptwin.screens.messages import SampleSaved
from bptwin.screens.samples import SampleDueBanner, SampleEntryScreen
from bptwin.twin.live import LiveSnapshot
from bptwin.twin.predictor import Prediction
from tests.screens_harness import (
    BATCH,
    NOW,
    OPERATOR,
    ScreenHarness,
    field,
    running_notebook,
    settle,
    type_into,
)

pytestmark = pytest.mark.usefixtures("cheap_pin_hashing")


def snapshot_with_prediction(od600: float = 8.0) -> LiveSnapshot:
    at = (NOW - timedelta(seconds=20)).timestamp()
    prediction = Prediction(at, od600, od600 - 0.5, od600 + 0.5, "od600-test", reactor="R1")
    return LiveSnapshot(taken_at=at, predictions={"R1": prediction})


class Harness(ScreenHarness):
    @on(SampleSaved)
    def _saved(self, message: SampleSaved) -> None:
        self.messages.append(message)


async def test_sample_entry_computes_od600_and_keeps_the_residual(notebook_url: str) -> None:
    notebook = running_notebook(notebook_url)
    app = Harness(
        lambda: SampleEntryScreen(DirectNotebook(notebook), BATCH, OPERATOR),
        snapshot=snapshot_with_prediction(8.0),
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        # The 4 h slot is due at 4 h 05 min: the form is prefilled with it.
        assert pilot.app.screen.query_one("#timepoint", Input).value == "4"
        await type_into(pilot, "od-raw", "0.42")
        await type_into(pilot, "dilution", "20")
        await pilot.pause()
        assert "OD600 8.4" in str(pilot.app.screen.query_one("#dilution-hint", Static).content)
        panel = str(pilot.app.screen.query_one("#model-panel", Static).content)
        assert "Model OD600 8.00" in panel and "residual +4.8 %" in panel
        await type_into(pilot, "filter-tare", "100.0")
        await type_into(pilot, "filter-dry", "130.0")
        await type_into(pilot, "filter-volume", "10")
        await pilot.pause()
        assert "DCW 3 g/L" in str(pilot.app.screen.query_one("#filter-volume-hint", Static).content)
        await type_into(pilot, "microscopy-clean", "y")
        await pilot.press("ctrl+s")
        await settle(pilot)
        message = str(pilot.app.screen.query_one("#sample-message", Static).content)
        assert "OD600 8.4" in message and "residual +4.8 %" in message
        table = pilot.app.screen.query_one("#schedule", DataTable)
        assert table.get_row_at(2)[2] == "taken" and table.get_row_at(2)[3] == "+4.8"
        assert pilot.app.screen.query_one("#timepoint", Input).value == "6"  # next slot
    [sample] = notebook.samples.list_samples(BATCH)
    assert sample.sop_timepoint_h == 4.0
    assert sample.od600 == pytest.approx(8.4)
    assert sample.predicted_od600 == pytest.approx(8.0)
    assert sample.dcw_g_per_l == pytest.approx(3.0)
    assert sample.microscopy_clean is True
    assert sample.entered_by == OPERATOR
    assert [type(m).__name__ for m in app.messages] == ["SampleSaved"]


async def test_a_bad_value_is_explained_next_to_its_field_and_nothing_is_stored(
    notebook_url: str,
) -> None:
    notebook = running_notebook(notebook_url)
    app = Harness(lambda: SampleEntryScreen(DirectNotebook(notebook), BATCH, OPERATOR))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await type_into(pilot, "od-raw", "abc")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "'abc' is not a number" in field(pilot, "od-raw").error
        assert field(pilot, "od-raw").has_class("-invalid")
        assert pilot.app.screen.focused is pilot.app.screen.query_one("#od-raw", Input)

        await type_into(pilot, "od-raw", "0.4")
        await type_into(pilot, "filter-tare", "120")
        await type_into(pilot, "filter-dry", "100")
        await type_into(pilot, "filter-volume", "10")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert not field(pilot, "od-raw").has_class("-invalid")
        assert "below the tare" in field(pilot, "filter-dry").error

        await type_into(pilot, "taken-at", "25:99")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "not a time of day" in field(pilot, "taken-at").error
    assert notebook.samples.list_samples(BATCH) == []


async def test_a_lab_without_a_photometer_saves_a_sample_by_its_dry_weight(
    notebook_url: str,
) -> None:
    notebook = running_notebook(notebook_url)
    app = Harness(
        lambda: SampleEntryScreen(DirectNotebook(notebook), BATCH, OPERATOR),
        snapshot=snapshot_with_prediction(8.0),
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        # Neither an OD600 nor a dry weight: refused at the OD600 field, nothing stored.
        await type_into(pilot, "glycerol", "12")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "needs an OD600 reading or a dry weight" in field(pilot, "od-raw").error
        assert notebook.samples.list_samples(BATCH) == []
        # The filter weights alone make a sample.
        await type_into(pilot, "filter-tare", "100.0")
        await type_into(pilot, "filter-dry", "141.0")
        await type_into(pilot, "filter-volume", "10")
        await pilot.press("ctrl+s")
        await settle(pilot)
        message = str(pilot.app.screen.query_one("#sample-message", Static).content)
        assert "no OD600, DCW 4.1 g/L" in message and "dry weight only" in message
        table = pilot.app.screen.query_one("#schedule", DataTable)
        assert table.get_row_at(2)[2] == "taken" and table.get_row_at(2)[3] == ""
    [sample] = notebook.samples.list_samples(BATCH)
    assert sample.od600 is None and sample.od_raw is None
    assert sample.dcw_g_per_l == pytest.approx(4.1)
    assert sample.sop_timepoint_h == 4.0 and sample.glycerol_g_per_l == pytest.approx(12.0)
    assert [type(m).__name__ for m in app.messages] == ["SampleSaved"]


async def test_the_due_banner_flags_missed_samples_and_the_one_due(tmp_path) -> None:
    from bptwin.database.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'notebook.sqlite'}"
    upgrade(url)
    notebook: NotebookService = running_notebook(url)
    app = Harness(lambda: SampleEntryScreen(DirectNotebook(notebook), BATCH, OPERATOR))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        banner = pilot.app.screen.query_one(SampleDueBanner)
        text = str(banner.content)
        assert "MISSED: 0 h, 2 h samples" in text
        assert "SAMPLE DUE NOW: 4 h (until 12:15 UTC)" in text
        assert banner.has_class("-missed") and banner.has_class("-due")
        table = pilot.app.screen.query_one("#schedule", DataTable)
        assert [table.get_row_at(i)[2] for i in range(3)] == ["MISSED", "MISSED", "due"]
