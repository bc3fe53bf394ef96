"""zoo.import_hooks.call_after_import: callbacks run after the module's body, once each, never breaking the import."""

from __future__ import annotations

import sys
import warnings

import pytest

from zoo.import_hooks import _AfterImport, _pending, call_after_import


@pytest.fixture
def module_dir(tmp_path):
    (tmp_path / "zoo_hooked_probe.py").write_text("VALUE = 42\n")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("zoo_hooked_probe", None)


def test_callbacks_run_once_after_the_body_and_the_finder_leaves(module_dir):
    seen = []

    def read_value():
        seen.append(sys.modules["zoo_hooked_probe"].VALUE)  # the body has run: its names exist

    def broken():
        raise ValueError("plugin bug")

    call_after_import("zoo_hooked_probe", read_value)
    call_after_import("zoo_hooked_probe", read_value)  # the same callback: registered once
    call_after_import("zoo_hooked_probe", broken)
    assert seen == [] and any(isinstance(f, _AfterImport) for f in sys.meta_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import zoo_hooked_probe  # noqa: F401
    assert seen == [42]
    assert any("broken after import zoo_hooked_probe failed: ValueError: plugin bug" in str(w.message)
               for w in caught)
    assert "zoo_hooked_probe" not in _pending
    if not _pending:  # (another module, e.g. timm, may still be awaited in this process)
        assert not any(isinstance(f, _AfterImport) for f in sys.meta_path)
    call_after_import("zoo_hooked_probe", read_value)  # already imported: now
    assert seen == [42, 42]
