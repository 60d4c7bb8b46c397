"""The base of the notebook screens: who works on which batch and reactor, reads in a worker.

A :class:`NotebookScreen` is an EntryForm (fields, errors at their field, one status line,
escape back) that holds the Notebook (eln.notebook), the operator, the batch and the reactor it
is about, and reads and writes the notebook off the UI thread (:meth:`NotebookScreen.load`,
:meth:`NotebookScreen.write`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from textual.worker import Worker

from bptwin.eln.errors import NotebookError, NotebookValidationError
from bptwin.eln.notebook import Notebook
from bptwin.screens.entry_widgets import EntryForm, ResultT

Loaded = TypeVar("Loaded")
Written = TypeVar("Written")


class NotebookScreen(EntryForm[ResultT]):
    """A screen on the lab notebook for one operator (and batch, and reactor, where it has one)."""

    def __init__(
        self,
        notebook: Notebook,
        operator: str,
        *,
        batch_number: int | None = None,
        reactor: str = "R1",
    ) -> None:
        super().__init__()
        self.notebook = notebook
        self.operator = operator
        self.batch_number = batch_number
        self.reactor = reactor

    @property
    def required_batch(self) -> int:
        """The batch of a screen that needs one (it is opened only with a batch)."""
        if self.batch_number is None:
            raise RuntimeError(f"{type(self).__name__} was opened without a batch")
        return self.batch_number

    def load(
        self, read: Callable[[], Loaded], show: Callable[[Loaded], object], *, group: str
    ) -> Worker[None]:
        """Run ``read`` (notebook reads) on a worker thread, then ``show`` its result here;
        a notebook error goes to the status line. A new load cancels the group's last one."""

        async def run() -> None:
            try:
                loaded = await asyncio.to_thread(read)
            except NotebookError as error:
                self._say(str(error), error=True)
                return
            show(loaded)

        return self.run_worker(run, group=group, exclusive=True, exit_on_error=False)

    async def write(self, call: Callable[[], Written]) -> Written | None:
        """Make a notebook write on a worker thread; a refusal is shown at its field and on the
        status line, and gives None."""
        try:
            return await asyncio.to_thread(call)
        except NotebookValidationError as error:
            self._show_error(error)
        except NotebookError as error:
            self._say(str(error), error=True)
        return None
