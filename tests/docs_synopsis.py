"""Signature synopses of docs (``Name(params) -> result`` lines) against the real code."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from typing import Any

HEAD = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\((?P<params>.*)\)\s*(?:->.*)?$", re.S)


def _statements(source: str) -> list[str]:
    """Logical statements: comments removed, lines joined while brackets are open."""
    out: list[str] = []
    current: list[str] = []
    depth = 0
    for raw in source.splitlines():
        line = _without_comment(raw)
        if not line.strip():
            continue
        current.append(line.strip())
        depth += sum(line.count(c) for c in "([{") - sum(line.count(c) for c in ")]}")
        if depth <= 0:
            joined = " ".join(current)
            out += [part.strip() for part in joined.split(" ; ")]
            current, depth = [], 0
    return out


def _without_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def _modules(package: str) -> list[Any]:
    root = importlib.import_module(package)
    found = [root]
    for info in pkgutil.iter_modules(root.__path__):
        try:
            found.append(importlib.import_module(f"{package}.{info.name}"))
        except Exception:  # a module that needs an optional extra
            continue
    return found


def _resolve(name: str, modules: list[Any]) -> Any | None:
    head, *rest = name.split(".")
    for module in modules:
        if hasattr(module, head):
            target = getattr(module, head)
            for part in rest:
                target = getattr(target, part, None)
                if target is None:
                    return None
            return target
    return None


def check_synopsis(source: str, package: str = "bptwin.drivers") -> int:
    """Check every ``Name(params)`` statement naming an object of ``package``; how many."""
    modules = _modules(package)
    checked = 0
    for statement in _statements(source):
        match = HEAD.match(statement)
        if match is None:
            continue
        target = _resolve(match.group("name"), modules)
        if target is None or not callable(target):
            continue
        try:
            documented = ast.parse(f"def f({match.group('params')}): pass").body[0].args
        except SyntaxError:
            continue  # a call with values, not a signature
        real = inspect.signature(target)
        problems = _compare(documented, real)
        if problems:
            raise AssertionError(
                f"{match.group('name')}: {'; '.join(problems)}\n  documented: "
                f"{statement}\n  real: {match.group('name')}{real}"
            )
        checked += 1
    return checked


def _compare(documented: ast.arguments, real: inspect.Signature) -> list[str]:
    """Documented parameters exist in the code in the same order, kind and default; the code may
    have more only with a default (optional extras, e.g. a test clock, a synopsis may omit)."""
    parameters = {p.name: p for p in real.parameters.values() if p.name not in ("self", "cls")}
    positional = documented.posonlyargs + documented.args
    shown = [(a, False) for a in positional] + [(a, True) for a in documented.kwonlyargs]
    defaults: dict[str, ast.expr] = {}
    for arg, default in zip(
        positional[len(positional) - len(documented.defaults) :], documented.defaults, strict=True
    ):
        defaults[arg.arg] = default
    for arg, kw_default in zip(documented.kwonlyargs, documented.kw_defaults, strict=True):
        if kw_default is not None:
            defaults[arg.arg] = kw_default
    problems = []
    order = list(parameters)
    last = -1
    for arg, keyword_only in shown:
        parameter = parameters.get(arg.arg)
        if parameter is None:
            problems.append(f"no parameter {arg.arg!r} in the code")
            continue
        if order.index(arg.arg) < last:
            problems.append(f"{arg.arg!r} is out of order")
        last = order.index(arg.arg)
        if keyword_only and parameter.kind is not parameter.KEYWORD_ONLY:
            problems.append(f"{arg.arg!r} is shown keyword-only but is not in the code")
        if (
            not keyword_only
            and parameter.kind is parameter.KEYWORD_ONLY
            and arg.arg not in defaults
        ):
            problems.append(f"{arg.arg!r} is keyword-only in the code")
        node = defaults.get(arg.arg)
        has_default = parameter.default is not inspect.Parameter.empty
        if node is None:
            if has_default:
                problems.append(f"{arg.arg!r} has a default ({parameter.default!r}) not shown")
            continue
        if not has_default:
            problems.append(f"{arg.arg!r} is required in the code")
            continue
        try:
            value = ast.literal_eval(node)
        except ValueError:
            continue  # e.g. "value" | "snapshot": the choices, not one default
        if value != parameter.default:
            problems.append(f"{arg.arg!r} default {value!r} != {parameter.default!r}")
    named = {arg.arg for arg, _ in shown}
    for name, parameter in parameters.items():
        if name in named or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is inspect.Parameter.empty:
            problems.append(f"required parameter {name!r} of the code is missing")
    return problems
