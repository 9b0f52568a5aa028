"""Config base helpers shared by the edge and central configs: the section base class (unknown keys
are errors, values are validated), the error that names file and key, YAML reading, and validators
both sides use."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["ConfigError", "Section", "format_validation_error", "known_timezone", "read_yaml_file"]


class Section(BaseModel):
    """Base of every config section (Frigate habit: ``extra="forbid"``, described fields)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class ConfigError(Exception):
    """A config that cannot be used; ``problems`` holds one line per problem, each naming file and key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def format_validation_error(err: ValidationError, example: str = "config/edge.example.yaml") -> list[str]:
    """One ``key.path: message`` line per pydantic error; ``example`` is the file an unknown key points to."""
    lines = []
    for e in err.errors():
        msg = e["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix) :]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key (check the spelling; see {example})"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error",) and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{_loc(e['loc'])}: {msg}")
    return lines


def read_yaml_file(path: Path | str) -> dict[str, Any] | None:
    """The mapping in a YAML config file; :class:`ConfigError` naming the file (and line) otherwise."""
    path = Path(path)
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(name, [f"file not found: {path}"]) from None
    except IsADirectoryError:
        raise ConfigError(name, [f"{path} is a folder, not a YAML file"]) from None
    except OSError as e:
        raise ConfigError(name, [f"cannot read {path}: {e.strerror}"]) from None
    if b"\0" in raw[:8192]:
        raise ConfigError(name, [f"{path} is a binary file, not YAML text"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            name,
            [
                f"line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                "save the file as UTF-8 (a GBK/GB2312 file: iconv -f GBK -t UTF-8)"
            ],
        ) from None
    text = text.removeprefix("\ufeff")  # a UTF-8 BOM (Windows editors) is harmless
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(name, [f"{where}not valid YAML ({getattr(e, 'problem', e)})"]) from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(name, [f"(top level): must be a mapping of sections, got {type(data).__name__}"])
    return data


def known_timezone(v: str) -> str:
    """Validator body shared by the edge and central configs: an IANA zone name."""
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {v!r} (e.g. 'Asia/Shanghai')") from None
    return v
