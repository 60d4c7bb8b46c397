"""Media preparations of a batch: the recipe made up (ingredient=amount pairs), the autoclave
cycle and the sterility check. UI only: the notebook checks the amounts and stores the record."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from bptwin.eln import form_rules, sample_math
from bptwin.eln.errors import NotebookValidationError
from bptwin.eln.notebook import Notebook
from bptwin.eln.records import MediaPreparationView
from bptwin.screens.entry_widgets import ENTRY_CSS, LabelledField
from bptwin.screens.notebook_screen import NotebookScreen

STERILITY = {True: "sterile", False: "NOT sterile", None: "not checked"}


def recipe_text(media: MediaPreparationView) -> str:
    return ", ".join(f"{name}={amount:g}" for name, amount in media.recipe.items())


class MediaPreparationScreen(NotebookScreen[None]):
    """The batch's media preparations; record one (ctrl+s)."""

    DEFAULT_CSS = (
        ENTRY_CSS
        + """
    MediaPreparationScreen #media { height: 1fr; min-height: 4; }
    MediaPreparationScreen #media-form { height: auto; padding: 0 1;
        border-top: solid $primary; }
    MediaPreparationScreen #media-message { height: auto; padding: 0 1; }
    MediaPreparationScreen #media-message.-error { color: $error; }
    """
    )
    MESSAGE_SELECTOR = "#media-message"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save medium"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self, notebook: Notebook, operator: str, *, batch_number: int, reactor: str = "R1"
    ) -> None:
        super().__init__(notebook, operator, batch_number=batch_number, reactor=reactor)

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="media", cursor_type="row", zebra_stripes=True)
        with Vertical(id="media-form"):
            yield Static("Record a media preparation", classes="entry-title")
            yield LabelledField(
                "Recipe",
                "recipe",
                width=44,
                placeholder="glycerol=40, basal_salts=26.7",
                fields=("recipe", "ingredient"),
            )
            yield LabelledField(
                "Autoclave cycle", "autoclave", width=18, fields=("autoclave cycle",)
            )
            yield LabelledField("Sterile", "sterile", hint="y / n / empty", fields=("sterility",))
            yield LabelledField(
                "Prepared at UTC",
                "prepared-at",
                width=18,
                hint="empty = now",
                fields=("preparation time",),
            )
            yield LabelledField("Notes", "media-notes", width=34, fields=("notes",))
        yield Static("", id="media-message")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Media preparation"
        self.sub_title = f"batch {self.required_batch} · {self.operator}"
        table = self.query_one(DataTable)
        table.add_column("#", key="id", width=3)
        table.add_column("Prepared", key="prepared", width=11)
        table.add_column("Recipe", key="recipe", width=34)
        table.add_column("Autoclave", key="autoclave", width=10)
        table.add_column("Sterility", key="sterility", width=11)
        table.add_column("By", key="by", width=8)
        self.reload()
        self._field("recipe").input.focus()

    def reload(self, then: str = "") -> None:
        def show(preparations: list[MediaPreparationView]) -> None:
            table = self.query_one(DataTable)
            table.clear()
            for media in preparations:
                table.add_row(
                    str(media.id),
                    media.prepared_at.strftime("%m-%d %H:%M"),
                    recipe_text(media),
                    media.autoclave_cycle or "—",
                    STERILITY[media.sterility_ok],
                    media.prepared_by,
                    key=str(media.id),
                )
            self._say(
                then or f"{len(preparations)} preparation(s). Fill in the form and press ctrl+s."
            )

        self.load(
            lambda: self.notebook.list_media_preparations(self.required_batch), show, group="media"
        )

    def action_save(self) -> None:
        self._clear_errors()
        try:
            recipe = form_rules.recipe("recipe", self._value("recipe"))
            sterile = sample_math.parse_yes_no("sterility", self._value("sterile"))
            text = self._value("prepared-at")
            prepared = (
                sample_math.parse_entry_time("preparation time", text, self.notebook.now())
                if text
                else None
            )
        except NotebookValidationError as error:
            self._show_error(error)
            return
        self.save(
            partial(
                self.notebook.record_media_preparation,
                self.operator,
                self.required_batch,
                recipe=recipe,  # type: ignore[arg-type]  # amounts as typed: checked there
                autoclave_cycle=self._value("autoclave"),
                sterility_ok=sterile,
                prepared_at=prepared,
                notes=self._value("media-notes"),
            )
        )

    def _show_error(self, error: NotebookValidationError, *, prefix: str = "Not saved") -> None:
        """An ingredient's amount ("amount of glycerol") belongs to the recipe field."""
        if error.field.startswith("amount of "):
            error = NotebookValidationError("recipe", error.message)
        super()._show_error(error, prefix=prefix)

    @work(exclusive=True, group="media-write", exit_on_error=False)
    async def save(self, record: Callable[[], MediaPreparationView]) -> None:
        media = await self.write(record)
        if media is None:
            return
        for field_id in ("recipe", "autoclave", "sterile", "prepared-at", "media-notes"):
            self._field(field_id).set_value("")
        self.reload(f"Medium #{media.id} recorded.")
