"""The bridge's record on local disk (bridge/statefile.py): written whole or not at all, a
file that cannot be read or written never stops the bridge."""

from __future__ import annotations

from pathlib import Path

from bridge.statefile import StateFile, default_path


def test_the_default_is_systemds_state_directory() -> None:
    assert default_path("/x/s.json", {"STATE_DIRECTORY": "/var/lib/goe-bridge"}) == "/x/s.json"
    assert default_path(None, {"STATE_DIRECTORY": "/var/lib/goe-bridge:/y"}) == (
        "/var/lib/goe-bridge/state.json"
    )
    assert default_path(None, {}) is None


def test_saved_and_loaded_whole(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    state = StateFile(str(path), lambda: {"seq": 3, "chargers": {"c": {"v": 1, "seq": 3}}})
    state.save()
    assert state.load() == {"v": 1, "seq": 3, "chargers": {"c": {"v": 1, "seq": 3}}}
    assert not (tmp_path / "sub" / "state.json.tmp").exists()


def test_a_broken_or_foreign_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateFile(str(path), dict)
    assert state.load() is None  # none yet
    path.write_text('{"v": 1, "seq": ')  # cut off by a power cut before the rename existed
    assert state.load() is None
    path.write_text('{"v": 99}')
    assert state.load() is None
    path.write_text("[1, 2]")
    assert state.load() is None


def test_a_file_that_cannot_be_written_is_said_once_and_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    state = StateFile(str(blocker / "state.json"), lambda: {"seq": 1})
    state.save()
    state.save()
    assert state.failed and state.saved == 0
