"""The newest LiveSnapshot as screens get it: a reactive on the App that they watch.

The control room's App sets ``snapshot`` once per refresh; a screen calls
:func:`follow_snapshots` when it mounts and is handed the newest snapshot then (if it asks) and
every new one while it is the screen on top.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import App, ReturnType
from textual.reactive import reactive
from textual.widget import Widget

from bptwin.twin.live import LiveSnapshot


class LiveApp(App[ReturnType]):
    """An App that holds the newest snapshot of the station (None until the first one)."""

    # Every snapshot is new (no equality test on the whole state), and setting it repaints
    # nothing by itself: the screens that watch it decide what to redraw.
    snapshot: reactive[LiveSnapshot | None] = reactive(None, always_update=True, repaint=False)


def current_snapshot(node: Widget) -> LiveSnapshot | None:
    """The App's newest snapshot (None before the first, or in an App without live data)."""
    app = node.app
    return app.snapshot if isinstance(app, LiveApp) else None


def follow_snapshots(
    node: Widget, show: Callable[[LiveSnapshot], object], *, at_once: bool = True
) -> None:
    """Hand ``show`` every new snapshot of the App while ``node``'s screen is on top, and with
    ``at_once`` the one there is now. An App without live data never calls it."""
    app = node.app
    if not isinstance(app, LiveApp):
        return

    def changed(snapshot: LiveSnapshot | None) -> None:
        if snapshot is not None and node.screen is app.screen:
            show(snapshot)

    node.watch(app, "snapshot", changed, init=at_once)
