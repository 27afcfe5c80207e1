"""Reading TOML files we validate: ``queries.toml`` (:mod:`monitor.config`) and ``taxonomy.toml``
(:mod:`monitor.taxonomy`).

Owns the two things both need: loading a file into a table with one-line errors (missing, unreadable, not
UTF-8, not TOML; a UTF-8 byte-order mark is accepted, as editors on Windows write one), and
:class:`TableReader`, which pops typed values out of one table so whatever is left over is an unknown key
(a typo). Every failure is a :class:`~monitor.errors.ConfigError` naming the file and the dotted key path.
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from .errors import ConfigError

T = TypeVar("T")

_KIND_NAMES: dict[type, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                                list: "an array", dict: "a table", dt.date: "a date like 2024-01-01"}


def load_toml(path: Path, *, missing: str, shown_as: str | None = None) -> tuple[dict[str, Any], bytes]:
    """The parsed table of a TOML file and its bytes. ``missing`` is the hint when the file does not exist;
    errors name the file as ``shown_as`` (default: the path as given)."""
    name = shown_as or str(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"file not found ({missing})", path=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a folder, not a TOML file", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None
    try:
        text = content.decode("utf-8-sig")  # a byte-order mark is not a TOML statement: drop it
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}): save the file as UTF-8", path=name) from None
    if "\x00" in text:
        raise ConfigError("contains a NUL character: save the file as UTF-8 text", path=name)
    try:
        return tomllib.loads(text), content
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=name) from None


class TableReader:
    """Pops typed values out of one TOML table, so leftovers are the unknown keys.

    ``where`` is the table's dotted path (``""`` for the top level); ``file`` names the file in errors;
    ``hint`` ends the unknown-key message (where the valid keys are documented)."""

    def __init__(self, table: Any, where: str, file: str, *, hint: str = "") -> None:
        self.file = file
        self.where = where
        self.hint = hint
        if not isinstance(table, dict):
            self.fail(None, "must be a table")
        self.table: dict[str, Any] = dict(table)

    def child(self, name: str, table: Any) -> TableReader:
        """A reader of a sub-table (``name`` is appended to this reader's path)."""
        return TableReader(table, self.key(name), self.file, hint=self.hint)

    def key(self, name: str | None) -> str:
        if not name:
            return self.where
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str | None, message: str) -> NoReturn:
        raise ConfigError(message, path=self.file, key=self.key(name))

    def has(self, name: str) -> bool:
        return name in self.table

    def pop_raw(self, name: str, default: Any = None) -> Any:
        """The value as TOML gave it (for tables the caller reads with :meth:`child`)."""
        return self.table.pop(name, default)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        """The value of ``name`` if it has one of ``kind`` (an integer passes as a float; a boolean never
        passes as a number), ``default`` if absent."""
        if name not in self.table:
            if required:
                self.fail(name, "is required")
            return default
        value = self.table.pop(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            self.fail(name, f"must be {kind_name(kinds)}, not a boolean")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kinds == (dt.date,) and isinstance(value, dt.datetime):
            self.fail(name, "must be a date like 2024-01-01 (no time)")
        if not isinstance(value, kinds):
            self.fail(name, f"must be {kind_name(kinds)}, not {toml_type(value)}")
        return value

    def text(self, name: str, default: str | None = None, required: bool = False) -> str | None:
        """A string; a required one must not be blank. Control characters are refused: a NUL or an escape
        sequence in a setting is a mistake, never a value."""
        value = self.get(name, str, default, required)
        if value is not None and required and not value.strip():
            self.fail(name, "must be a non-empty string")
        if value is not None and any(ord(c) < 32 and c not in "\t\n\r" for c in value):
            self.fail(name, "contains a control character (a NUL or escape): remove it")
        return value  # type: ignore[no-any-return]

    def word(self, name: str, default: str = "", required: bool = False) -> str:
        """A non-blank string, stripped (``default`` when absent)."""
        value = self.text(name, None, required)
        if value is None:
            return default
        if not value.strip():
            self.fail(name, "must be a non-empty string")
        return value.strip()

    def number(self, name: str, kind: type[T], default: T, minimum: float, maximum: float) -> T:
        """An int or float (``kind``) within ``[minimum, maximum]``; NaN and infinities are refused."""
        value = self.get(name, kind, default)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(name, f"must be a finite number, not {value}")
        if not minimum <= value <= maximum:
            self.fail(name, f"must be between {minimum:g} and {maximum:g}, not {value}")
        return value  # type: ignore[no-any-return]

    def strings(self, name: str) -> tuple[str, ...]:
        """An array of non-blank strings, each stripped (empty when absent)."""
        if name not in self.table:
            return ()
        value = self.table.pop(name)
        if not isinstance(value, list):
            self.fail(name, "must be an array of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{name}[{i}]", "must be a non-empty string")
        return tuple(v.strip() for v in value)

    def done(self) -> None:
        """Fail on the first key nobody read."""
        if self.table:
            unknown = sorted(self.table)[0]
            suffix = f"; {self.hint}" if self.hint else ""
            self.fail(unknown, f"unknown key (check the spelling{suffix})")


def kind_name(kinds: tuple[type, ...]) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


def toml_type(value: Any) -> str:
    """How a TOML value is named in an error message."""
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dt.datetime):
        return "a date-time"
    if isinstance(value, dt.date):
        return "a date"
    return f"{type(value).__name__} {value!r}"
