"""`grassroots seed-demo`, then everything started by hand as it says: the gateway gets data, not 502/503.

The registries are started with exactly the commands ``seed-demo`` prints (each requires the API key its
department issued to the gateway), the gateway with ``grassroots serve``; nothing is seeded in-process.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.launch import spawn, start_gateway, stop, wait_healthy
from gateway.upstream import ServiceTokenSigner, load_or_create_ed25519
from tests.ports import free_port
from tests.stack import REPO, Stack, scenarios_at_any_hour

pytestmark = pytest.mark.slow


def _printed_commands(stdout: str) -> list[list[str]]:
    return [shlex.split(line) for line in stdout.splitlines() if line.startswith(f"  {sys.executable} ")]


@pytest.fixture(scope="module")
def by_hand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    root = tmp_path_factory.mktemp("seed-demo-by-hand")
    data_dir = root / "var"
    gateway_port, upstream_port, person_house_port = free_port(), free_port(), free_port()
    # Opening hours lifted so the test runs at any hour (they are not what is under test here).
    scenarios = scenarios_at_any_hour(root / "scenarios.toml")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GRASSROOTS_DATA_DIR": str(data_dir),
        "GRASSROOTS_DEV_IDP_ENABLED": "true",
        "GRASSROOTS_PORT": str(gateway_port),
        "GRASSROOTS_LOG_LEVEL": "warning",
        "GRASSROOTS_SCENARIOS_PATH": str(scenarios),
    }
    env.pop("GRASSROOTS_DATABASE_URL", None)
    stack = Stack(
        "sqlite",
        data_dir,
        f"sqlite:///{data_dir / 'gateway.db'}",
        env,
        gateway_port,
        upstream_port,
        person_house_port=person_house_port,
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        stack.cli("db", "upgrade")
        seeded = stack.cli(
            "seed-demo",
            "--upstream-url",
            f"http://127.0.0.1:{upstream_port}",
            "--person-house-url",
            f"http://127.0.0.1:{person_house_port}",
        ).stdout
        commands = _printed_commands(seeded)
        for argv, port in zip(commands, (upstream_port, person_house_port), strict=True):
            proc = spawn(argv, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(proc)
            wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        stack.gateway = start_gateway(port=gateway_port, env=env, cwd=root)
        processes.append(stack.gateway)
        yield stack, seeded
    finally:
        stop(*processes)


def test_seed_demo_prints_one_command_per_registry_each_requiring_the_gateway_key(
    by_hand: tuple[Stack, str],
) -> None:
    stack, seeded = by_hand
    commands = _printed_commands(seeded)
    assert [argv[2] for argv in commands] == ["demoworld.civil_affairs", "demoworld.person_house"]
    for argv, system in zip(commands, ("civil-affairs-registry", "person-house-registry"), strict=True):
        keys = Path(argv[argv.index("--gateway-credentials") + 1])
        assert keys == stack.credentials_file(system)
        assert "\nsha256:" in keys.read_text()
        assert Path(argv[argv.index("--gateway-public-key") + 1]) == stack.gateway_public_key


def test_the_registry_refuses_a_caller_without_the_key_seed_demo_issued(by_hand: tuple[Stack, str]) -> None:
    stack, _ = by_hand
    signer = ServiceTokenSigner(
        load_or_create_ed25519(stack.data_dir / "keys" / "gateway-service-ed25519.pem")
    )
    answer = httpx.get(
        f"http://127.0.0.1:{stack.upstream_port}/residents",
        params={"org_prefix": "310151101201"},
        headers={"Authorization": f"Bearer {signer.token_for('civil-affairs-registry')}"},
        timeout=10.0,
    )
    assert answer.status_code == 401
    assert answer.json()["error"] == "gateway_credential_invalid"


@pytest.mark.parametrize(
    ("username", "dataset", "scenario"),
    [
        ("cadre_a", "residents", "DIBAO_REVIEW"),  # the civil-affairs registry
        ("grid_a1", "houses", "GRID_VISIT"),  # the person-house registry (一标三实)
    ],
)
def test_the_gateway_started_by_hand_gets_data_from_both_registries(
    by_hand: tuple[Stack, str], username: str, dataset: str, scenario: str
) -> None:
    stack, _ = by_hand
    answer = stack.get(stack.dataset_url(dataset), username, scenario=scenario, page_size=3)
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"]
