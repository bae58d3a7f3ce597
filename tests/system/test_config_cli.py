"""The config commands as a user runs them: `goe-bridge schema` prints the committed schema,
and `check-config` words what YAML made of an unquoted password."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def goe_bridge(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("goe-bridge", path=str(Path(sys.executable).parent))
    return subprocess.run(
        [*([exe] if exe else [sys.executable, "-m", "bridge"]), *args], capture_output=True,
        text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False,
    )  # fmt: skip


def test_schema_prints_the_committed_schema() -> None:
    result = goe_bridge("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema == json.loads((ROOT / "goe-bridge.schema.json").read_text())
    assert schema["title"] == "goe-bridge configuration"


def test_check_config_says_how_to_quote_a_password_yaml_read_as_a_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("brokers:\n  home:\n    username: goe\n    password: 0123\n    port: x\n")
    bad.chmod(0o600)
    result = goe_bridge("check-config", "-c", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}: 2 problem(s):",
        "  brokers.home.port: expected an integer, got 'x'",
        '  brokers.home.password: YAML read it unquoted as a number; quote it: password: "…"',
    ]
