"""docker-compose.yml, checked without a Docker engine: against the Compose Specification's
JSON schema (check-jsonschema's vendored copy), and by compose itself (``docker-compose
config``), which also proves that the secrets have no default."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {
    "SAAS_TASKS_SECRET_KEY": "k" * 32,
    "POSTGRES_PASSWORD": "p" * 16,
    "FLOWER_BASIC_AUTH": "ops:" + "f" * 16,
}


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_compose_file_matches_the_compose_specification_schema() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")

    out = run([str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])

    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok -- validation done" in out.stdout


def test_the_schema_check_refuses_a_broken_compose_file(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["worker"]["restart"] = ["always"]  # must be a string
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    checker = Path(sys.executable).with_name("check-jsonschema")

    out = run([str(checker), "--builtin-schema", "vendor.compose-spec", str(path)])

    assert out.returncode != 0


def test_compose_accepts_the_file_and_refuses_to_run_without_its_secrets() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed")

    assert run(["docker-compose", "config", "-q"], **SECRETS).returncode == 0
    for name in SECRETS:
        missing = run(
            ["docker-compose", "config", "-q"], **{k: v for k, v in SECRETS.items() if k != name}
        )
        assert missing.returncode != 0 and name in missing.stderr, name


def test_compose_runs_the_procfile_processes_with_health_checked_services() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]

    assert {"redis", "postgres", "migrate", "worker", "beat", "flower", "mailpit"} <= set(services)
    assert "healthcheck" in services["redis"] and "healthcheck" in services["postgres"]
    assert "--appendonly" in " ".join(map(str, services["redis"]["command"]))
