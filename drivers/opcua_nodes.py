"""OPC UA nodes of a source: finding them, checking their type, and reading their DataValues.

:func:`resolve_nodes` turns each point's node id or browse path into a node of the server and
checks, in a few batched requests, that it exists, is a variable and holds a scalar number; a
point that fails gets a :class:`NodeProblem` whose message names the channel, the node and what
is wrong (``missing_node``, ``wrong_type``). :func:`reading_of` maps one DataValue to a reading
or a counted refusal:

- status Good → quality ``good``; Uncertain → ``uncertain`` (value kept); Bad → a reading with no
  value and quality ``bad`` (the dashboard shows the gap, cleaning and alarms see it);
- the time is the server's SourceTimestamp, else its ServerTimestamp, else the arrival time;
- a value that is text, a boolean, an array, NaN or infinity is refused (``wrong_type``,
  ``not_finite``), never stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bptwin.database.reading import Quality, Reading
from bptwin.drivers.field_points import (
    PointOptions,
    PointRefused,
    as_number,
    bad_reading,
    point_reading,
)

if TYPE_CHECKING:
    from asyncua import Client, Node, ua

MISSING_NODE = "missing_node"
WRONG_TYPE = "wrong_type"

# Built-in data types (namespace 0) whose values are numbers: SByte … Double, and the abstract
# Number, Integer, UInteger; BaseDataType (24) may hold anything, so each value is checked as
# it arrives. Boolean, String, DateTime, ByteString … are not channel values.
NUMERIC_DATA_TYPES = frozenset({2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 24, 26, 27, 28})
TYPE_NAMES = {1: "Boolean", 12: "String", 13: "DateTime", 15: "ByteString", 21: "LocalizedText"}
VARIABLE_NODE_CLASS = 2


@dataclass(frozen=True, slots=True)
class NodeProblem:
    """Why a point has no node to read now (counted under ``reason``)."""

    index: int
    reason: str
    message: str


def node_id_text(node: str, namespace_index: int | None) -> str:
    """A node id from the settings; ``s=…``/``i=…`` without ``ns=`` take the source's namespace."""
    if namespace_index is not None and not node.startswith(("ns=", "nsu=")):
        return f"ns={namespace_index};{node}"
    return node


def path_elements(path: str, namespace_index: int | None) -> list[str]:
    """``"2:Bioreactor/2:R1/2:pH"`` or, with the source's namespace, ``"Bioreactor/R1/pH"``."""
    elements = []
    for element in path.strip("/").split("/"):
        prefix, colon, _name = element.partition(":")
        qualified = bool(colon) and prefix.isdigit()
        if not qualified and namespace_index is not None:
            element = f"{namespace_index}:{element}"
        elements.append(element)
    return elements


def describe(point: PointOptions, where: str) -> str:
    return f"{point.channel} ({where})"


async def resolve_nodes(
    client: Client,
    points: Sequence[tuple[int, PointOptions, str | None, str | None]],
    namespace_index: int | None,
) -> tuple[dict[int, Node], list[NodeProblem]]:
    """Nodes for ``(index, point, node_id, path)``; the rest with the reason they have none."""
    from asyncua import ua

    found: dict[int, Node] = {}
    problems: list[NodeProblem] = []
    by_path = [(i, p, path) for i, p, _node, path in points if path]
    if by_path:
        targets = await client.nodes.objects.get_children_by_path(
            [path_elements(path, namespace_index) for _i, _p, path in by_path],
            raise_on_partial_error=False,
        )
        for (index, point, path), targets_of_path in zip(by_path, targets, strict=True):
            first = targets_of_path[0] if targets_of_path else None
            if first is None:
                problems.append(
                    NodeProblem(
                        index,
                        MISSING_NODE,
                        f"{describe(point, f'path {path!r}')}: no such node on the server",
                    )
                )
            else:
                found[index] = first
    for index, _point, node_id, _path in points:
        if node_id:
            found[index] = client.get_node(node_id_text(node_id, namespace_index))
    if not found:
        return found, problems
    indices = list(found)
    nodes: list[Node] = [found[i] for i in indices]
    classes = await client.read_attributes(nodes, ua.AttributeIds.NodeClass)
    types = await client.read_attributes(nodes, ua.AttributeIds.DataType)
    ranks = await client.read_attributes(nodes, ua.AttributeIds.ValueRank)
    where = {i: (f"node {n!r}" if n else f"path {p!r}") for i, _pt, n, p in points}
    point_of = {i: pt for i, pt, _n, _p in points}
    for index, variable, node_class, data_type, rank in zip(
        indices, nodes, classes, types, ranks, strict=True
    ):
        label = describe(point_of[index], where[index])
        problem = await _node_problem(variable, node_class, data_type, rank, label)
        if problem is not None:
            reason, message = problem
            problems.append(NodeProblem(index, reason, message))
            del found[index]
    return found, problems


async def _node_problem(
    node: Node,
    node_class: ua.DataValue,
    data_type: ua.DataValue,
    rank: ua.DataValue,
    label: str,
) -> tuple[str, str] | None:
    from asyncua import ua

    if not node_class.StatusCode or not node_class.StatusCode.is_good():
        return MISSING_NODE, f"{label}: no such node on the server"
    klass = node_class.Value.Value if node_class.Value is not None else None
    if int(klass or 0) != VARIABLE_NODE_CLASS:
        return WRONG_TYPE, f"{label}: not a variable (node class {klass}), nothing to read"
    type_id = data_type.Value.Value if data_type.Value is not None else None
    if isinstance(type_id, ua.NodeId) and type_id.NamespaceIndex == 0:
        numeric = type_id.Identifier in NUMERIC_DATA_TYPES
        name = TYPE_NAMES.get(int(type_id.Identifier) if isinstance(type_id.Identifier, int) else 0)
    else:  # a vendor's subtype: follow it down to the built-in type it stands for
        try:
            variant = await node.read_data_type_as_variant_type()
        except (ua.UaError, ValueError) as exc:
            return WRONG_TYPE, f"{label}: cannot tell its data type ({exc})"
        numeric = variant.value in NUMERIC_DATA_TYPES
        name = variant.name
    if not numeric:
        return WRONG_TYPE, f"{label}: holds {name or type_id}, not a number"
    value_rank = rank.Value.Value if rank.Value is not None else None
    if isinstance(value_rank, int) and value_rank >= 1:
        return WRONG_TYPE, f"{label}: holds an array, not one number"
    return None


def timestamp_of(value: ua.DataValue, arrived_at: float) -> float:
    """The source's time of the value, else the server's, else when it arrived."""
    stamp = value.SourceTimestamp or value.ServerTimestamp
    if not isinstance(stamp, dt.datetime):
        return arrived_at
    if stamp.tzinfo is None:  # OPC UA DateTime is UTC
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def quality_of(value: ua.DataValue) -> Quality:
    status = value.StatusCode
    if status is None or status.is_good():
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.UNCERTAIN
    return Quality.BAD


def node_gone(value: ua.DataValue) -> bool:
    """True when the status says the node no longer exists."""
    from asyncua import ua

    status = value.StatusCode
    return status is not None and status.value in {
        ua.StatusCodes.BadNodeIdUnknown,
        ua.StatusCodes.BadNodeIdInvalid,
        ua.StatusCodes.BadAttributeIdInvalid,
    }


def reading_of(
    point: PointOptions, reactor: str, value: ua.DataValue, arrived_at: float, where: str
) -> Reading:
    """The reading one DataValue stands for; PointRefused for a value that is not a number."""
    timestamp = timestamp_of(value, arrived_at)
    quality = quality_of(value)
    if quality is Quality.BAD:
        return bad_reading(point, reactor, timestamp)
    raw = value.Value.Value if value.Value is not None else None
    number = as_number(raw, f"{point.channel} ({where})")
    return point_reading(point, reactor, timestamp, number, quality)


__all__ = [
    "MISSING_NODE",
    "WRONG_TYPE",
    "NodeProblem",
    "PointRefused",
    "node_gone",
    "reading_of",
    "resolve_nodes",
]
