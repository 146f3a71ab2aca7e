"""Where no engine can run, the engine rehearsals skip with the reason; under CI=true they fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from rehearsal import engine as engine_module
from tests.engine.conftest import engine_or_skip


def test_without_root_the_reason_names_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module.os, "geteuid", lambda: 1000)
    reason = engine_module.why_unavailable()
    assert reason is not None and "root" in reason


def test_a_missing_tool_is_named_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(engine_module.shutil, "which", lambda name, path=None: None if name == "ctr" else "/x")
    assert engine_module.missing_tools() == ["ctr (containerd)"]
    assert "ctr (containerd)" in (engine_module.why_unavailable() or "")


def test_engine_tests_skip_locally_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="root"):
        engine_or_skip()


def test_engine_tests_fail_under_ci_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no real engine"):
        engine_or_skip()


def test_start_engine_refuses_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(engine_module.os, "geteuid", lambda: 1000)
    with pytest.raises(engine_module.EngineUnavailable, match="root"):
        engine_module.start_engine(tmp_path, hosts={})
