"""The narrow storage protocols of monitor.interfaces: a real Storage satisfies every one of them.

mypy checks the same statically where monitor.app hands its Storage to each consumer; this checks, at run
time and on the backend under test, that no protocol names a method or property Storage lacks."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Protocol

from monitor import interfaces
from monitor.storage import Storage
from tests.conftest import db_url


def protocols() -> list[type]:
    return [obj for _, obj in inspect.getmembers(interfaces, inspect.isclass)
            if obj.__module__ == interfaces.__name__ and Protocol in obj.__mro__ and obj is not Protocol]


def test_every_protocol_is_checkable_and_storage_satisfies_it(tmp_path: Path) -> None:
    found = protocols()
    assert len(found) >= 8
    with Storage.open(db_url(tmp_path / "m.sqlite3")) as store:
        for protocol in found:
            assert getattr(protocol, "_is_runtime_protocol", False), f"{protocol.__name__} is not @runtime_checkable"
            assert isinstance(store, protocol), protocol.__name__


def test_every_member_a_protocol_names_exists_on_storage() -> None:
    for protocol in protocols():
        names = {n for n in vars(protocol) if not n.startswith("_")}
        missing = sorted(n for n in names if not hasattr(Storage, n))
        assert not missing, f"{protocol.__name__}: {missing}"
