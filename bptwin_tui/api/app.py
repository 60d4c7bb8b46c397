"""The read-only HTTP API as a FastAPI app: GET only, every data route behind a bearer token.

Routes (docs/api.md): ``/v1/...`` for notebook records, model versions and channel ranges,
``/metrics`` (token too) and ``/health`` (no token, no data). Every refusal is JSON
``{"error": ..., "parameter": ...}`` with a 4xx status and no data, counted in
``bptwin_api_refused``. The notebook is read only through its services and frozen records.
"""

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from bptwin.database.channels import CHANNELS_BY_NAME
from bptwin.database.reading import format_timestamp
from bptwin.database.relational import RelationalStoreError
from bptwin.database.timeseries.base import TimeSeriesError
from bptwin.eln.acceptance_service import list_decisions
from bptwin.eln.api_tokens import ApiTokenView
from bptwin.eln.errors import NotebookNotFoundError, NotebookValidationError
from bptwin.eln.records import (
    AlarmEventView,
    BatchView,
    CalibrationView,
    DeviationView,
    SampleView,
    view_of,
)
from bptwin.tui import __version__
from bptwin.tui.api.context import ApiContext
from bptwin.tui.api.metrics import ApiMetrics
from bptwin.tui.api.models_registry import model_registry_listing
from bptwin.tui.api.readings import (
    RangeError,
    check_cursor,
    check_limit,
    parse_time,
    read_page,
    readings_csv,
    readings_json_array,
)
from bptwin.tui.api.schemas import (
    AcceptanceDecisionOut,
    AlarmEventOut,
    BatchOut,
    CalibrationOut,
    DeviationOut,
    ErrorOut,
    HealthOut,
    ModelRegistryOut,
    ReactorOut,
    ReadingsPageOut,
    SampleOut,
    out_of,
)

log = logging.getLogger(__name__)

DESCRIPTION = """\
Read-only access to a bptwin station for LIMS and scripts: batches, samples, calibrations,
deviations, alarm events, acceptance decisions, model versions and channel ranges (JSON or CSV,
paged). Every `/v1` route and `/metrics` need `Authorization: Bearer <token>`; a supervisor makes
tokens with `bptwin api token create`. There are no write routes: anything but GET is refused
(405).
"""

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_LIST_LIMIT = 10_000

REFUSAL_REASONS = {401: "unauthenticated", 404: "not_found", 405: "method", 503: "unavailable"}


class ApiProblem(Exception):
    """A refusal with its status, words and (when one is to blame) the parameter."""

    def __init__(self, status: int, message: str, parameter: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameter = parameter


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "no token, or an unknown or revoked one"},
    404: {"model": ErrorOut, "description": "no such batch, reactor or channel"},
    422: {"model": ErrorOut, "description": "a parameter that cannot be used (named)"},
}


def create_app(context: ApiContext) -> FastAPI:
    """The API over ``context``; its metrics go into ``context.registry``."""
    app = FastAPI(
        title="bptwin read-only API",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    metrics = ApiMetrics.of(context.registry)
    app.state.context = context
    app.state.metrics = metrics
    bearer = HTTPBearer(
        auto_error=False,
        bearerFormat="bptwin_…",
        description="a token from 'bptwin api token create'",
    )

    def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiTokenView:
        if credentials is None:
            raise ApiProblem(401, "a token is required: send 'Authorization: Bearer <token>'")
        token = context.tokens.active_token(credentials.credentials)
        if token is None:
            raise ApiProblem(401, "unknown or revoked token")
        return token

    _install_handlers(app, metrics)
    app.include_router(_data_routes(context, require_token))

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, 401: ERRORS[401]},
        summary="Prometheus metrics (the station's inside bptwin serve)",
        tags=["operations"],
    )
    def prometheus_metrics(_token: Annotated[ApiTokenView, Depends(require_token)]) -> Response:
        return Response(generate_latest(context.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/health",
        response_model=HealthOut,
        responses={503: {"model": HealthOut}},
        summary="ok, degraded or unhealthy (no token needed; carries no data)",
        tags=["operations"],
    )
    def health() -> JSONResponse:
        judged = context.check_health()
        body = {"status": judged.status, "problems": list(judged.problems)}
        return JSONResponse(body, status_code=judged.http_status)

    return app


def _data_routes(context: ApiContext, require_token: Callable[..., ApiTokenView]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=ERRORS)
    notebook = context.notebook
    BatchNumber = Annotated[int, Path(ge=1, le=999_999, description="the batch number")]
    Limit = Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT, description="newest first, at most")]

    def batch_numbers() -> dict[int, int]:
        return {row.id: row.number for row in notebook.batches.list_batches() if row.id is not None}

    def numbered(
        model: type[BaseModel],
        view: type[CalibrationView] | type[AlarmEventView],
        rows: Iterable[object],
    ) -> list[Any]:
        """``model`` answers for the rows, each ``batch_id`` given as its batch number."""
        numbers = batch_numbers()
        answer = []
        for row in rows:
            record = view_of(view, row)
            batch_number = None if record.batch_id is None else numbers[record.batch_id]
            answer.append(out_of(model, record, batch_number=batch_number))
        return answer

    @router.get("/batches", response_model=list[BatchOut], tags=["notebook"])
    def batches(
        status: Annotated[
            str | None, Query(description="setup, running, complete or aborted")
        ] = None,
    ) -> list[BatchOut]:
        """Batches, newest number first."""
        rows = notebook.batches.list_batches(status)
        return [BatchOut.model_validate(view_of(BatchView, row)) for row in rows]

    @router.get("/batches/{number}", response_model=BatchOut, tags=["notebook"])
    def batch(number: BatchNumber) -> BatchOut:
        return BatchOut.model_validate(view_of(BatchView, notebook.batches.get_batch(number)))

    @router.get("/batches/{number}/samples", response_model=list[SampleOut], tags=["notebook"])
    def samples(number: BatchNumber) -> list[SampleOut]:
        """The batch's offline samples, in the order they were taken."""
        rows = notebook.samples.list_samples(number)
        return [SampleOut.model_validate(view_of(SampleView, row)) for row in rows]

    @router.get(
        "/batches/{number}/deviations", response_model=list[DeviationOut], tags=["notebook"]
    )
    def deviations(number: BatchNumber) -> list[DeviationOut]:
        rows = notebook.deviations.list_deviations(number)
        return [DeviationOut.model_validate(view_of(DeviationView, row)) for row in rows]

    @router.get("/acceptance", response_model=list[AcceptanceDecisionOut], tags=["notebook"])
    def acceptance(
        batch: Annotated[int | None, Query(ge=1, le=999_999, description="one batch")] = None,
    ) -> list[AcceptanceDecisionOut]:
        """Supervisors' acceptance decisions for training, newest first; the newest of each
        batch is the one in force."""
        numbers = batch_numbers()
        seen: set[int] = set()
        answer = []
        for row in list_decisions(notebook, batch):
            answer.append(
                AcceptanceDecisionOut(
                    id=row.id,
                    batch_number=numbers[row.batch_id],
                    decision=str(row.decision.value),
                    reason=row.reason,
                    verdict=row.verdict,
                    evaluation=dict(row.evaluation),
                    decided_by=row.decided_by,
                    decided_at=row.decided_at,
                    in_force=row.batch_id not in seen,
                )
            )
            seen.add(row.batch_id)
        return answer

    @router.get("/calibrations", response_model=list[CalibrationOut], tags=["notebook"])
    def calibrations(
        channel: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
        batch: Annotated[
            int | None, Query(ge=1, le=999_999, description="its own and bench calibrations")
        ] = None,
        limit: Limit = 100,
    ) -> list[CalibrationOut]:
        """Calibrations, newest first."""
        rows = notebook.calibrations.list_calibrations(
            channel=channel, batch_number=batch, limit=limit
        )
        return numbered(CalibrationOut, CalibrationView, rows)

    @router.get("/alarms", response_model=list[AlarmEventOut], tags=["notebook"])
    def alarms(
        reactor: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
        batch: Annotated[int | None, Query(ge=1, le=999_999)] = None,
        limit: Limit = 200,
    ) -> list[AlarmEventOut]:
        """Alarm events (raised, acknowledged, shelved, cleared...), newest first."""
        rows = notebook.alarms.list_alarm_events(reactor=reactor, batch_number=batch, limit=limit)
        return numbered(AlarmEventOut, AlarmEventView, rows)

    @router.get("/models", response_model=ModelRegistryOut, tags=["models"])
    def models() -> ModelRegistryOut:
        """OD600 model versions of the shipped and the user's registry, and their promotions."""
        return model_registry_listing(context.model_registries)

    @router.get("/reactors", response_model=list[ReactorOut], tags=["time series"])
    def reactors() -> list[ReactorOut]:
        """Reactors configured or holding data, with the channels that hold data."""
        stored = context.stored_channels()
        return [
            ReactorOut(
                reactor=name,
                configured=name in context.reactors,
                channels=[channel for reactor, channel in stored if reactor == name],
            )
            for name in context.known_reactors()
        ]

    @router.get(
        "/reactors/{reactor}/channels/{channel}/readings",
        response_model=ReadingsPageOut,
        responses={200: {"content": {"text/csv": {}}}},
        tags=["time series"],
    )
    def readings(
        reactor: str,
        channel: str,
        start: Annotated[str, Query(description="ISO 8601 with zone, or Unix seconds")],
        end: Annotated[str, Query(description="exclusive; ISO 8601 with zone, or Unix seconds")],
        limit: Annotated[int | None, Query(description="readings per page")] = None,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        format: Annotated[Literal["json", "csv"], Query()] = "json",
    ) -> Response:
        """Readings of one channel with ``start <= time < end``, oldest first, one page at a
        time: follow ``next_cursor`` (CSV: the ``X-Next-Cursor`` header) until it is null."""
        if reactor not in context.known_reactors():
            raise ApiProblem(404, f"there is no reactor {reactor[:64]!r}", "reactor")
        stored = {
            name for name_reactor, name in context.stored_channels() if name_reactor == reactor
        }
        if channel not in CHANNELS_BY_NAME and channel not in stored:
            raise ApiProblem(404, f"reactor {reactor} has no channel {channel[:64]!r}", "channel")
        begin, finish = parse_time("start", start), parse_time("end", end)
        if finish <= begin:
            raise RangeError("end", "end must be after start (the range is start <= t < end)")
        start_ms, end_ms = round(begin * 1000), round(finish * 1000)
        if end_ms <= start_ms:
            raise RangeError("end", "end must be at least a millisecond after start")
        page_size = check_limit(limit, context.limits.default_limit, context.limits.max_limit)
        after = check_cursor(cursor, start_ms, end_ms)
        page = read_page(context.store, reactor, channel, start_ms, end_ms, page_size, after)
        headers = {}
        if page.next_cursor is not None:
            headers["X-Next-Cursor"] = str(page.next_cursor)
        if format == "csv":
            return Response(
                readings_csv(page.readings),
                media_type="text/csv; charset=utf-8",
                headers=headers,
            )
        head = {
            "reactor": reactor,
            "channel": channel,
            "unit": page.unit,
            "start": format_timestamp(begin),
            "end": format_timestamp(finish),
            "count": len(page.readings),
            "next_cursor": None if page.next_cursor is None else str(page.next_cursor),
        }
        # The readings array is written directly (a dict per reading costs more than the
        # read); the shape is ReadingsPageOut's, which the schema and the tests hold it to.
        body = json.dumps(head)[:-1] + ',"readings":' + readings_json_array(page.readings) + "}"
        return Response(body, media_type="application/json", headers=headers)

    return router


def _install_handlers(app: FastAPI, metrics: ApiMetrics) -> None:
    def refused(status: int, message: str, parameter: str | None, **headers: str) -> JSONResponse:
        reason = "bad_parameter" if status in (400, 422) else REFUSAL_REASONS.get(status, "other")
        metrics.refusal(reason, parameter)
        return JSONResponse(
            {"error": message, "parameter": parameter}, status_code=status, headers=headers or None
        )

    @app.exception_handler(ApiProblem)
    async def problem(request: Request, exc: ApiProblem) -> JSONResponse:
        if exc.status == 401:
            return refused(401, exc.message, None, **{"WWW-Authenticate": "Bearer"})
        return refused(exc.status, exc.message, exc.parameter)

    @app.exception_handler(RangeError)
    async def bad_range(request: Request, exc: RangeError) -> JSONResponse:
        return refused(422, exc.message, exc.parameter)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ())]
        parameter = location[-1] if location else None
        message = str(first.get("msg", "invalid request"))
        return refused(422, f"{parameter}: {message}" if parameter else message, parameter)

    @app.exception_handler(NotebookValidationError)
    async def notebook_refused(request: Request, exc: NotebookValidationError) -> JSONResponse:
        status = 404 if isinstance(exc, NotebookNotFoundError) else 422
        return refused(status, exc.message, exc.field)

    @app.exception_handler(RelationalStoreError)
    async def notebook_away(request: Request, exc: RelationalStoreError) -> JSONResponse:
        log.warning("api: notebook unavailable: %s", exc)
        return refused(503, "the notebook database is not reachable now", None)

    @app.exception_handler(TimeSeriesError)
    async def store_away(request: Request, exc: TimeSeriesError) -> JSONResponse:
        log.warning("api: time-series store unavailable: %s", exc)
        return refused(503, "the time-series store is not reachable now", None)

    @app.exception_handler(StarletteHTTPException)
    async def routing(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "this API is read-only: only GET" if exc.status_code == 405 else str(exc.detail)
        return refused(exc.status_code, message, None, **(exc.headers or {}))

    @app.middleware("http")
    async def count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", None) or "unmatched"
        metrics.answered(name, request.method, response.status_code, time.perf_counter() - began)
        return response


def openapi_document() -> dict[str, Any]:
    """The OpenAPI schema without a notebook or store behind it (``bptwin api openapi``)."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    placeholder = SimpleNamespace(registry=CollectorRegistry(), notebook=None)
    return create_app(placeholder).openapi()  # type: ignore[arg-type]
