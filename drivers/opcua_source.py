"""OPC UA source: a bioreactor controller's variables read over OPC UA (asyncua).

A source of kind ``opcua`` (docs/drivers.md, "OPC UA source") is one server - a controller such
as a DCU, a BioFlo, a DASbox - and a list of ``nodes`` (points), each feeding one channel of one
reactor from a node id or a browse path. The driver subscribes to data changes (the server
samples and reports; nothing is polled) with the trigger "status, value or timestamp", so a
controller that refreshes its source timestamp every scan delivers every sample. Where the
server refuses subscriptions, or ``mode = "poll"``, it reads every node once per ``interval_s``.

The server's SourceTimestamp becomes the reading's time and its status the quality
(drivers/opcua_nodes.py). A node that does not exist or holds no number is named in a clear
message and counted (``missing_node``, ``wrong_type``); the other nodes are read meanwhile and
the missing ones are looked for again every ``recheck_s``, which also finds nodes that
disappear while subscribed. A lost connection is closed and reopened with back-off
(database/backoff.py), each reopening counted in ``reconnects``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from pydantic import Field, SecretStr, model_validator

from bptwin.database.backoff import Backoff
from bptwin.drivers.base import ReadingSink
from bptwin.drivers.field_points import (
    PointOptions,
    PointRefused,
    bad_reading,
    probe_answer,
)
from bptwin.drivers.opcua_nodes import (
    MISSING_NODE,
    NodeProblem,
    node_gone,
    reading_of,
    resolve_nodes,
)
from bptwin.drivers.sources import (
    DriverConfigError,
    PointDriverTiming,
    PointSourceDriver,
    PointSourceKind,
    PointSourceOptions,
    SourceOptions,
    register_kind,
)

if TYPE_CHECKING:
    from asyncua import Client, Node, ua
    from asyncua.common.subscription import DataChangeNotif, Subscription
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

SecurityPolicyName = Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"]


# -- settings ------------------------------------------------------------------------------------


class OpcUaNode(PointOptions):
    """One variable of the server: by ``node`` id or by browse ``path`` from Objects."""

    node: str | None = Field(None, min_length=1, max_length=512)
    path: str | None = Field(None, min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _one_address(self) -> OpcUaNode:
        if (self.node is None) == (self.path is None):
            raise ValueError("give either 'node' (a node id) or 'path' (a browse path), not both")
        return self

    @property
    def where(self) -> str:
        return f"node {self.node!r}" if self.node else f"path {self.path!r}"


class OpcUaOptions(PointSourceOptions):
    points_key = "nodes"
    kind: Literal["opcua"] = "opcua"
    url: str = Field(pattern=r"^opc\.tcp://")
    mode: Literal["subscribe", "poll"] = "subscribe"
    interval_s: float = Field(1.0, ge=0.05, le=3600, allow_inf_nan=False)
    # The namespace URI node ids and path elements without an index belong to (indices may
    # change when a server restarts; the URI does not).
    namespace: str = ""
    security_policy: SecurityPolicyName = "None"
    security_mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: Path | None = None  # this client's certificate (DER or PEM)
    private_key: Path | None = None
    server_certificate: Path | None = None  # pin the server's; without it, the endpoint's is used
    application_uri: str = "urn:bptwin:opcua-client"  # must match the certificate's URI
    username: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    timeout_s: float = Field(4.0, gt=0, le=60, allow_inf_nan=False)
    recheck_s: float = Field(10.0, ge=1, le=3600, allow_inf_nan=False)
    nodes: list[OpcUaNode] = Field(min_length=1)

    @model_validator(mode="after")
    def _security_complete(self) -> OpcUaOptions:
        unsigned = self.certificate is None or self.private_key is None
        if self.security_policy != "None" and unsigned:
            raise ValueError(
                f"security_policy {self.security_policy!r} needs 'certificate' and 'private_key'"
            )
        if self.password is not None and self.password_file is not None:
            raise ValueError("give 'password' or 'password_file', not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs its 'username'")
        return self

    def secret(self) -> str | None:
        """The password, read from ``password_file`` when given (first line, stripped)."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
            except (OSError, IndexError) as exc:
                raise DriverConfigError(
                    f"password_file: cannot read {self.password_file}: {exc}"
                ) from None
        return None


# -- the driver ------------------------------------------------------------------------------------


async def make_client(options: OpcUaOptions) -> Client:
    """An asyncua client with the source's security and user, not yet connected."""
    from asyncua import Client, ua
    from asyncua.crypto import security_policies

    client = Client(options.url, timeout=options.timeout_s, watchdog_intervall=options.timeout_s)
    client.application_uri = options.application_uri
    client.name = client.description = "bptwin"
    if options.username:
        client.set_user(options.username)
        secret = options.secret()
        if secret is not None:
            client.set_password(secret)
    if options.security_policy != "None":
        assert options.certificate is not None and options.private_key is not None
        policy = getattr(security_policies, f"SecurityPolicy{options.security_policy}")
        await client.set_security(
            policy,
            str(options.certificate),
            str(options.private_key),
            server_certificate=(
                str(options.server_certificate) if options.server_certificate else None
            ),
            mode=getattr(ua.MessageSecurityMode, options.security_mode),
        )
    return client


class _Notifications:
    """The subscription's handler: hands each data change and status change to the driver."""

    def __init__(self, driver: OpcUaSourceDriver) -> None:
        self._driver = driver

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        self._driver.on_data_value(node, data.monitored_item.Value)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        self._driver.on_status_change(status)


class OpcUaSourceDriver(PointSourceDriver):
    """Reads the nodes of one OPC UA server into readings (module docstring)."""

    def __init__(
        self,
        sink: ReadingSink,
        options: OpcUaOptions,
        *,
        name: str = "opcua",
        **timing: Unpack[PointDriverTiming],
    ) -> None:
        super().__init__(sink, options, name=name, **timing)
        self.options = options
        self.points = list(options.nodes)
        # Per connection: which point each node feeds, and the points without a node now.
        self._point_of: dict[str, list[int]] = {}
        self._nodes: dict[int, Node] = {}
        self._missing: dict[int, NodeProblem] = {}
        self._handles: dict[int, int] = {}
        self._recheck_now = False
        self._last_polled: dict[int, tuple[float, float]] = {}
        self.polling = options.mode == "poll"  # True also when the server refused to subscribe
        self.problems: list[str] = []  # the latest node problems, for doctor and the log

    @property
    def missing_points(self) -> dict[str, str]:
        """``"R1/ph" -> why`` for every point without a node to read now."""
        return {
            self._label(i, self.points[i].channel): problem.message
            for i, problem in sorted(self._missing.items())
        }

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        backoff = Backoff(self.backoff_initial_s, self.backoff_max_s)
        ever_connected = False
        while not stop.is_set():
            lost = asyncio.Event()
            try:
                client = await self._connect(lost)
            except DriverConfigError as exc:
                self._count_error("settings", str(exc))
                await _sleep(stop, backoff.next_delay())
                continue
            except Exception as exc:  # any refusal: unreachable, security, user, timeout
                self._count_error("connect", f"cannot connect to {self.options.url}: {_why(exc)}")
                await _sleep(stop, backoff.next_delay())
                continue
            self._set_connected(True, reconnect=ever_connected)
            ever_connected = True
            backoff.reset()
            try:
                await self._acquire(client, stop, lost)
            except Exception as exc:  # the connection or the session broke
                self._count_error("lost", f"{self.options.url} lost: {_why(exc)}")
            finally:
                self._set_connected(False)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.disconnect(), self.options.timeout_s)
            if not stop.is_set():
                await _sleep(stop, backoff.next_delay())

    async def _connect(self, lost: asyncio.Event) -> Client:
        client = await make_client(self.options)

        async def on_lost(exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        await client.connect()
        return client

    async def _namespace_index(self, client: Client) -> int | None:
        if not self.options.namespace:
            return None
        try:
            return await client.get_namespace_index(self.options.namespace)
        except ValueError:
            raise DriverConfigError(
                f"namespace {self.options.namespace!r} is not on the server"
            ) from None

    async def _acquire(self, client: Client, stop: threading.Event, lost: asyncio.Event) -> None:
        namespace_index = await self._namespace_index(client)
        self._nodes, self._missing, self._handles = {}, {}, {}
        self._last_polled = {}
        subscription = None
        await self._resolve(client, list(range(len(self.points))), namespace_index)
        if not self.polling:
            subscription = await self._subscribe(client)
        next_recheck = time.monotonic() + self.options.recheck_s
        try:
            while not stop.is_set():
                if lost.is_set():
                    raise ConnectionError("the server stopped answering")
                if self.polling:
                    await self._poll(client)
                await _sleep(stop, self.options.interval_s if self.polling else 0.1)
                if self._recheck_now or time.monotonic() >= next_recheck:
                    self._recheck_now = False
                    next_recheck = time.monotonic() + self.options.recheck_s
                    await self._recheck(client, subscription, namespace_index)
        finally:
            if subscription is not None and not lost.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(subscription.delete(), self.options.timeout_s)

    async def _resolve(
        self, client: Client, indices: Sequence[int], namespace_index: int | None
    ) -> list[int]:
        """Find the nodes of ``indices``; returns those found (the rest counted and named)."""
        wanted = [(i, self.points[i], self.points[i].node, self.points[i].path) for i in indices]
        found, problems = await resolve_nodes(client, wanted, namespace_index)
        for index, node in found.items():
            self._nodes[index] = node
            self._missing.pop(index, None)
            self._point_of.setdefault(node.nodeid.to_string(), [])
            if index not in self._point_of[node.nodeid.to_string()]:
                self._point_of[node.nodeid.to_string()].append(index)
        for problem in problems:
            self._missing[problem.index] = problem
            reactor = self._reactors[problem.index]
            self._reject(problem.reason, f"{reactor}/{problem.message}")
        self.problems = [p.message for p in self._missing.values()]
        return list(found)

    async def _subscribe(self, client: Client) -> Subscription | None:
        """Data-change notifications for every node found; None (polling) if refused."""
        from asyncua import ua

        try:
            subscription = await client.create_subscription(
                self.options.interval_s * 1000, _Notifications(self)
            )
        except ua.UaStatusCodeError as exc:
            log.warning(
                "%s: %s refuses subscriptions (%s); reading every %.3g s instead",
                self.name,
                self.options.url,
                exc,
                self.options.interval_s,
            )
            self.polling = True
            return None
        await self._monitor(subscription, list(self._nodes))
        return subscription

    async def _monitor(self, subscription: Subscription, indices: Sequence[int]) -> None:
        from asyncua import ua

        if not indices:
            return
        # "Status, value or timestamp": a controller that stamps every scan reports every sample.
        trigger = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        results = await subscription._subscribe(
            [self._nodes[i] for i in indices],
            mfilter=cast("ua.MonitoringFilter", trigger),
            queuesize=10,
            sampling_interval=ua.Double(self.options.interval_s * 1000),
        )
        assert isinstance(results, list)
        for index, result in zip(indices, results, strict=True):
            if isinstance(result, int):
                self._handles[index] = result
                continue
            self._nodes.pop(index)
            problem = NodeProblem(
                index,
                MISSING_NODE if node_gone_status(result) else "refused",
                f"{self.points[index].channel} ({self.points[index].where}): the server "
                f"refuses to monitor it ({result.name})",
            )
            self._missing[index] = problem
            self._reject(problem.reason, f"{self._reactors[index]}/{problem.message}")

    async def _poll(self, client: Client) -> None:
        from asyncua import ua

        indices = list(self._nodes)
        if not indices:
            return
        params = ua.ReadParameters()
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        for index in indices:
            item = ua.ReadValueId()
            item.NodeId = self._nodes[index].nodeid
            item.AttributeId = ua.AttributeIds.Value
            params.NodesToRead.append(item)
        values = await client.uaclient.read(params)
        arrived_at = self._clock()
        for index, value in zip(indices, values, strict=True):
            self._handle(index, value, arrived_at, polled=True)

    async def _recheck(
        self, client: Client, subscription: Subscription | None, namespace_index: int | None
    ) -> None:
        """Look again for missing nodes, and notice subscribed nodes that disappeared."""
        from asyncua import ua

        watched = list(self._nodes)
        if watched:
            values = await client.read_attributes(
                [self._nodes[i] for i in watched], ua.AttributeIds.Value
            )
            for index, value in zip(watched, values, strict=True):
                if node_gone(value):
                    self._handle(index, value, self._clock())
        if self._missing:
            found = await self._resolve(client, list(self._missing), namespace_index)
            if subscription is not None:
                await self._monitor(subscription, found)

    # -- values ----------------------------------------------------------------------------------

    def on_data_value(self, node: Node, value: ua.DataValue) -> None:
        """A data change from the subscription (on the driver's event loop)."""
        arrived_at = self._clock()
        for index in self._point_of.get(node.nodeid.to_string(), ()):
            if index in self._nodes:
                self._handle(index, value, arrived_at)

    def on_status_change(self, status: ua.StatusChangeNotification) -> None:
        """The server says something happened to the subscription: check the nodes soon."""
        code = status.Status
        if code is not None and not code.is_good():
            log.info("%s: subscription status %s", self.name, code.name)
            self._recheck_now = True

    def _handle(
        self, index: int, value: ua.DataValue, arrived_at: float, polled: bool = False
    ) -> None:
        point, reactor = self.points[index], self._reactors[index]
        if node_gone(value):
            node = self._nodes.pop(index, None)
            self._handles.pop(index, None)  # the server dropped the monitored item with the node
            problem = NodeProblem(
                index, MISSING_NODE, f"{point.channel} ({point.where}): the node disappeared"
            )
            self._missing[index] = problem
            self.problems = [p.message for p in self._missing.values()]
            self._reject(MISSING_NODE, f"{reactor}/{problem.message}")
            if node is not None:
                self._emit(bad_reading(point, reactor, arrived_at))
            return
        try:
            reading = reading_of(point, reactor, value, arrived_at, point.where)
        except PointRefused as exc:
            self._reject(exc.reason, f"{reactor}/{exc}")
            return
        if polled:
            # A poll re-reads a value the server has not changed: not a new measurement.
            key = (reading.timestamp, reading.value)
            if self._last_polled.get(index) == key and value.SourceTimestamp is not None:
                return
            self._last_polled[index] = key
        self._emit(reading)


class OpcUaKind(PointSourceKind):
    name = "opcua"
    options_model = OpcUaOptions
    driver_class = OpcUaSourceDriver

    def check(self, options: SourceOptions, context_is_mqtt: bool) -> None:
        super().check(options, context_is_mqtt)
        for key in ("certificate", "private_key", "server_certificate", "password_file"):
            path = getattr(options, key)
            if path is not None and not Path(path).is_file():
                raise DriverConfigError(f"{key}: {path} does not exist")


register_kind(OpcUaKind())


def probe_opcua(options: OpcUaOptions, name: str = "opcua") -> tuple[bool, str]:
    """Connect once and read every node (``bptwin doctor``): reachable, and what each says."""
    return asyncio.run(_probe(options, name))


async def _probe(options: OpcUaOptions, name: str) -> tuple[bool, str]:
    from bptwin.database.reading import Reading

    readings: list[Reading] = []
    driver = OpcUaSourceDriver(readings.append, options, name=name)
    try:
        client = await driver._connect(asyncio.Event())
    except Exception as exc:
        return False, f"cannot connect to {options.url}: {_why(exc)}"
    try:
        namespace_index = await driver._namespace_index(client)
        await driver._resolve(client, list(range(len(driver.points))), namespace_index)
        await driver._poll(client)
    except Exception as exc:
        return False, f"{options.url}: {_why(exc)}"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), options.timeout_s)
    answers = f"answers ({options.security_policy})"
    return probe_answer(
        options.url, readings, len(driver.points), "nodes", driver.missing_points, answers
    )


def node_gone_status(status: ua.StatusCode) -> bool:
    from asyncua import ua

    return status.value in {ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid}


async def _sleep(stop: threading.Event, seconds: float) -> None:
    """Wait ``seconds`` on the event loop, returning early once ``stop`` is set."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, 0.05))


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
