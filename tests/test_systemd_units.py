"""The systemd units pass ``systemd-analyze verify`` without a single warning.

systemd-analyze exits 0 even for an unknown key or an unparsable value (it
"ignores" them), so the test also requires empty output. ExecStart must name an
existing executable for verify, so the units are checked in a copy whose
install path points at a stub.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.engine_process import REPO

UNITS = ("hybrid-engine.service", "hybrid-dashboard.service")
INSTALLED_CLI = "/opt/hybrid-engine/.venv/bin/hybrid-engine"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (package systemd)"
)


def _copy_units(tmp_path: Path, mutate: dict[str, tuple[str, str]] | None = None) -> list[Path]:
    stub = tmp_path / "bin" / "hybrid-engine"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    paths = []
    for unit in UNITS:
        text = (REPO / "systemd" / unit).read_text().replace(INSTALLED_CLI, str(stub))
        if mutate and unit in mutate:
            old, new = mutate[unit]
            assert old in text
            text = text.replace(old, new)
        path = tmp_path / unit
        path.write_text(text)
        paths.append(path)
    return paths


def _verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", *map(str, paths)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@needs_systemd_analyze
def test_units_verify_clean(tmp_path: Path) -> None:
    result = _verify(_copy_units(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@needs_systemd_analyze
def test_units_verify_typo_in_directive_is_reported(tmp_path: Path) -> None:
    paths = _copy_units(tmp_path, {"hybrid-dashboard.service": ("CPUWeight=", "CPUWieght=")})
    result = _verify(paths)
    assert "Unknown key 'CPUWieght'" in result.stderr


def test_dashboard_unit_is_loopback_readonly_and_yields_cpu() -> None:
    text = (REPO / "systemd" / "hybrid-dashboard.service").read_text()
    lines = set(text.splitlines())
    exec_start = next(line for line in lines if line.startswith("ExecStart="))
    assert " dashboard " in exec_start and "--host 127.0.0.1" in exec_start
    for directive in (
        "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
        "StateDirectory=hybrid-engine", "IPAddressDeny=any", "IPAddressAllow=localhost",
        "CPUWeight=50", "CPUQuota=50%", "KillSignal=SIGINT", "Restart=on-failure",
        "RestartPreventExitStatus=12",
    ):
        assert directive in lines, directive
