"""Batch acceptance for training: the five criteria with their evidence, and the supervisor's
decision (accept or reject, with a reason, name and PIN).

UI only: the screen is handed ``evaluate()`` and ``decide(...)`` callables (the app runs the
acceptance flow behind them) and calls both in thread workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Static

from bptwin.eln.acceptance import AcceptanceEvaluation
from bptwin.eln.errors import NotebookValidationError
from bptwin.screens.entry_widgets import ENTRY_CSS, EntryForm, LabelledField
from bptwin.screens.safe_text import escape

Decide = Callable[[str, str, str, str], Any]  # supervisor, PIN, "accept"|"reject", reason

MARKS = {"pass": "[green]✓ pass[/]", "fail": "[red]✗ fail[/]", "incomplete": "[yellow]? open[/]"}


def checklist_markup(evaluation: AcceptanceEvaluation) -> str:
    """The criteria as Rich markup: mark, name, then the evidence lines."""
    lines = [f"[b]Verdict: {MARKS.get(evaluation.verdict, evaluation.verdict)}[/]"]
    for result in evaluation.criteria:
        lines.append(f"{MARKS[result.status]}  [b]{result.number}. {escape(result.name)}[/]")
        lines.extend(f"      {escape(line)}" for line in result.evidence)
    return "\n".join(lines)


def outcome_text(outcome: Any) -> str:
    """One line on a recorded decision and what happened to the training set."""
    row = getattr(outcome, "decision", None)
    if row is None:
        return str(outcome)
    decision = getattr(row.decision, "value", row.decision)
    text = f"Decision '{decision}' recorded by {row.decided_by} (audited)."
    state = getattr(outcome, "training_set", "")
    if state == "added":
        text += f" Added to the training set ({getattr(outcome, 'rows', 0)} rows at 1 Hz)."
    elif state == "removed":
        text += " Removed from the training set."
    elif state == "failed":
        text += f" Training set not updated: {getattr(outcome, 'problem', '')}"
        text += " ('bptwin accept --sync' repairs it)."
    return text


class AcceptanceScreen(EntryForm[None]):
    """Shows the automatic evaluation; a supervisor records the decision, which is audited."""

    DEFAULT_CSS = (
        ENTRY_CSS
        + """
    AcceptanceScreen #acceptance-checklist { height: 1fr; padding: 0 1;
        border: round $primary; }
    AcceptanceScreen #acceptance-form { height: auto; padding: 0 1; }
    AcceptanceScreen #acceptance-message { height: auto; padding: 0 1; }
    AcceptanceScreen #acceptance-message.-error { color: $error; }
    """
    )
    MESSAGE_SELECTOR = "#acceptance-message"
    BINDINGS = [
        Binding("ctrl+a", "decide('accept')", "Accept", priority=True),
        Binding("ctrl+x", "decide('reject')", "Reject", priority=True),
        Binding("ctrl+r", "evaluate", "Re-evaluate"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(
        self,
        batch_number: int,
        operator: str,
        *,
        evaluate: Callable[[], AcceptanceEvaluation],
        decide: Decide,
        decision_in_force: str = "",
    ) -> None:
        super().__init__()
        self.batch_number = batch_number
        self.operator = operator
        self._evaluate = evaluate
        self._decide = decide
        self.decision_in_force = decision_in_force
        self.evaluation: AcceptanceEvaluation | None = None
        self.outcome: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="acceptance-checklist"):
            yield Static("Evaluating the batch…", id="acceptance-text")
        with Vertical(id="acceptance-form"):
            yield LabelledField(
                "Reason", "acceptance-reason", fields=("reason",), placeholder="required"
            )
            yield LabelledField(
                "Supervisor",
                "acceptance-supervisor",
                fields=("supervisor", "operator", "name"),
                width=20,
            )
            yield LabelledField("PIN", "acceptance-pin", fields=("pin",), password=True, width=12)
        yield Static(self.decision_in_force, id="acceptance-message")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Batch acceptance"
        self.sub_title = f"batch {self.batch_number} · {self.operator}"
        self.query_one("#acceptance-reason", Input).focus()
        self.action_evaluate()

    def action_evaluate(self) -> None:
        self.query_one("#acceptance-text", Static).update("Evaluating the batch…")
        self._run_evaluation()

    @work(thread=True, exclusive=True, group="acceptance-evaluate", exit_on_error=False)
    def _run_evaluation(self) -> None:
        try:
            evaluation = self._evaluate()
        except Exception as exc:  # store or notebook away: say so, keep the screen
            self.app.call_from_thread(self._say, f"Evaluation failed: {exc}", error=True)
            return
        self.app.call_from_thread(self._show_evaluation, evaluation)

    def _show_evaluation(self, evaluation: AcceptanceEvaluation) -> None:
        self.evaluation = evaluation
        self.query_one("#acceptance-text", Static).update(checklist_markup(evaluation))

    def action_decide(self, decision: str) -> None:
        reason = self._field("acceptance-reason")
        supervisor = self._field("acceptance-supervisor")
        pin = self._field("acceptance-pin")
        self._clear_errors()
        missing = False
        for field, text in (
            (reason, "Give the reason for the decision."),
            (supervisor, "A supervisor decides: enter the name."),
            (pin, "Enter the supervisor's PIN."),
        ):
            if not field.value.strip():
                field.show_error(text)
                missing = True
        if missing:
            return
        self._say(f"Recording '{decision}'…")
        self._run_decision(supervisor.value.strip(), pin.value, decision, reason.value.strip())

    @work(thread=True, exclusive=True, group="acceptance-decide", exit_on_error=False)
    def _run_decision(self, supervisor: str, pin: str, decision: str, reason: str) -> None:
        try:
            outcome = self._decide(supervisor, pin, decision, reason)
        except Exception as exc:  # refused (PIN, role, failing batch) or store away
            self.app.call_from_thread(self._refused, exc)
            return
        self.app.call_from_thread(self._decided, outcome)

    def _refused(self, exc: Exception) -> None:
        if isinstance(exc, NotebookValidationError):
            self._show_error(exc, prefix="Not recorded")
        else:
            self._say(f"Not recorded: {exc}", error=True)
        self._field("acceptance-pin").set_value("")

    def _decided(self, outcome: Any) -> None:
        self.outcome = outcome
        self._field("acceptance-pin").set_value("")
        self._say(outcome_text(outcome))
        evaluation = getattr(outcome, "evaluation", None)
        if isinstance(evaluation, AcceptanceEvaluation):
            self._show_evaluation(evaluation)
