"""``BPTWIN_...`` environment overrides, read like the settings file.

pydantic-settings hands environment values to the models as strings. Most types coerce from
text, but a literal of numbers (``control.mode: 0 | 1``) and the free-form tables
(``[alarms]``, ``[[acquisition.sources]]``) do not: ``BPTWIN_CONTROL__MODE=1`` would be refused
with "Input should be 0 or 1" and an alarm delay would arrive as the text "240". Each such value
is parsed as the TOML value it would be in the file. A variable that names no setting
(``BPTWIN_BUSS__HOST``, ``BPTWIN_BUS_HOST``) is refused, naming the closest setting.
"""

from __future__ import annotations

import difflib
import sys
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_settings import EnvSettingsSource

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# BPTWIN_ variables that are read by a command or by the tests, not settings.
NON_SETTING_VARIABLES = frozenset({"BPTWIN_SUPERVISOR_PIN"})
NON_SETTING_PREFIXES = ("BPTWIN_TEST_", "BPTWIN_BENCH_", "BPTWIN_SOAK_")


def toml_value(text: str) -> Any:
    """``text`` as the TOML value it would be in the settings file, else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def coerce_like_file(value: Any, annotation: Any) -> Any:
    """``value`` from the environment, with text turned into what the file would hold."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(value, dict):
            return value
        fields = annotation.model_fields
        return {
            key: coerce_like_file(item, fields[key].annotation) if key in fields else item
            for key, item in value.items()
        }
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        for member in members:
            coerced = coerce_like_file(value, member)
            if coerced is not value:
                return coerced
        return value
    if origin is Literal:
        choices = get_args(annotation)
        numeric = any(not isinstance(choice, str) for choice in choices)
        if numeric and isinstance(value, str) and value not in choices:
            return toml_value(value)  # the model decides, as for the same value in the file
        return value
    if origin in (dict, Mapping) and isinstance(value, dict):
        item_type = get_args(annotation)[1] if get_args(annotation) else Any
        return {key: coerce_like_file(item, item_type) for key, item in value.items()}
    if origin is list and isinstance(value, list):
        item_type = get_args(annotation)[0] if get_args(annotation) else Any
        return [coerce_like_file(item, item_type) for item in value]
    if annotation is Any:
        if isinstance(value, dict):
            return {key: coerce_like_file(item, Any) for key, item in value.items()}
        if isinstance(value, str):
            return toml_value(value)
    return value


class FileLikeEnvSource(EnvSettingsSource):
    """The environment source of ``Settings``: values coerced as in the file."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        return coerce_like_file(data, self.settings_cls)


def setting_variables(model: type[BaseModel], prefix: str = "BPTWIN_") -> dict[str, bool]:
    """Every environment name of a setting, and whether free-form keys may follow it."""
    names: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        section = _model_of(field.annotation)
        if section is not None:
            names[variable] = False
            names.update(setting_variables(section, variable + "__"))
        else:
            names[variable] = _free_form(field.annotation)
    return names


def unknown_variables(
    environment: Mapping[str, str], model: type[BaseModel], prefix: str = "BPTWIN_"
) -> list[str]:
    """One message per ``BPTWIN_`` variable that names no setting, with the closest setting."""
    known = setting_variables(model, prefix)
    problems = []
    for variable in sorted(environment):
        name = variable.upper()
        if not name.startswith(prefix) or name in NON_SETTING_VARIABLES:
            continue
        if name.startswith(NON_SETTING_PREFIXES) or name in known:
            continue
        if any(name.startswith(base + "__") for base, free in known.items() if free):
            continue
        closest = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        hint = f"; did you mean {closest[0]}?" if closest else ""
        problems.append(f"environment {variable}: names no setting{hint}")
    return problems


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _free_form(annotation: Any) -> bool:
    """A table whose keys are the user's (``[alarms]``, ``topic_map``, ``sources``)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_free_form(arg) for arg in get_args(annotation))
    return origin in (dict, Mapping, list) and any(
        arg is Any or get_origin(arg) in (dict, Mapping) for arg in get_args(annotation)
    )
