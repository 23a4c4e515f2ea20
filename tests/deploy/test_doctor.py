"""`mlflow-gateway doctor` against real services, and against each of them made unreachable.

The healthy configuration is the one the SQLite deployment's gateway runs with (a real MLflow
started by the image's entrypoint, a real Redis, a SQLite database). Each failure is caused for
real by pointing one setting at a port where nothing listens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.devstack import free_port
from tests.deploy.services import Deployment
from tests.helpers import run_cli
from tests.oidc_provider import OidcProvider, require_e2e_tools, running_oidc_provider

CLIENT = {
    "client_id": "doctor",
    "client_secret": "doctor-secret-doctor-secret",
    "redirect_uris": ["http://127.0.0.1/.gateway/callback"],
}


@pytest.fixture(scope="module")
def healthy_env(deployments: dict[str, Deployment]) -> dict[str, str]:
    gateway = deployments["sqlite+local"].gateway
    assert gateway is not None
    return dict(gateway.env)


def doctor(env: dict[str, str]) -> tuple[int, list[str], str]:
    result = run_cli("doctor", env=env, timeout=120)
    return result.returncode, result.stdout.splitlines(), result.stderr


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def test_all_well(healthy_env: dict[str, str]) -> None:
    code, lines, _ = doctor(healthy_env)
    assert code == 0, lines
    assert failures(lines) == []
    components = [line.split()[1] for line in lines if line.startswith("ok")]
    assert components == ["config", "authz", "mlflow", "database", "redis"]
    assert "MLflow 3.17.2, serves artifacts" in "\n".join(lines)
    assert "the shipped model — decisions from the policy index" in "\n".join(lines)
    assert lines[-1] == "All checks passed."


@pytest.mark.parametrize(
    ("variable", "value", "component", "advice"),
    [
        ("GATEWAY_UPSTREAM_URL", "http://127.0.0.1:{port}", "mlflow", "start the MLflow server"),
        ("GATEWAY_REDIS_URL", "redis://:s3cret@127.0.0.1:{port}/0", "redis", "start Redis"),
        (
            "GATEWAY_DATABASE_URL",
            "postgresql://gw:s3cret@127.0.0.1:{port}/gateway",
            "database",
            "check GATEWAY_DATABASE_URL",
        ),
    ],
)
def test_one_unreachable_dependency_is_one_actionable_line(
    healthy_env: dict[str, str], variable: str, value: str, component: str, advice: str
) -> None:
    port = free_port()
    code, lines, _ = doctor({**healthy_env, variable: value.format(port=port)})
    assert code == 1
    [line] = failures(lines)
    assert line.split()[1] == component
    assert f"127.0.0.1:{port}" in line and advice in line
    assert "s3cret" not in "\n".join(lines)


def test_mlflow_refusing_the_gateways_host_is_named(
    healthy_env: dict[str, str], deployments: dict[str, Deployment]
) -> None:
    # That MLflow accepts only Host 127.0.0.1:*; "localhost" reaches it but is refused.
    port = deployments["sqlite+local"].server.port
    code, lines, _ = doctor({**healthy_env, "GATEWAY_UPSTREAM_URL": f"http://localhost:{port}"})
    assert code == 1
    [line] = failures(lines)
    assert f"MLFLOW_SERVER_ALLOWED_HOSTS=localhost:{port}" in line


def test_configuration_problems_are_listed(healthy_env: dict[str, str]) -> None:
    env = {k: v for k, v in healthy_env.items() if k != "GATEWAY_UPSTREAM_URL"}
    code, lines, _ = doctor({**env, "GATEWAY_PORT": "99999"})
    assert code == 1
    assert [line.split()[1] for line in failures(lines)] == ["config"]
    assert "GATEWAY_PORT='99999' is invalid" in lines[0]


MODELS = Path(__file__).resolve().parents[1] / "unit" / "models"


def test_a_site_model_is_named_with_its_path_and_cost(healthy_env: dict[str, str]) -> None:
    code, lines, _ = doctor({**healthy_env, "GATEWAY_CASBIN_MODEL": str(MODELS / "tenant.conf")})
    assert code == 0, lines
    [authz] = [line for line in lines if line.split()[1] == "authz"]
    assert (
        authz.startswith("ok")
        # The tenant model keeps casbin's four-field rules (no expiry field) and its own matcher.
        and "a site model (differs from the shipped one in policy_definition, matchers" in authz
    )
    assert (
        "decisions by pycasbin" in authz and "an uncached decision on a 1,021-rule sample" in authz
    )


def test_a_model_it_cannot_serve_is_a_configuration_failure(
    healthy_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "model.conf"
    bad.write_text((MODELS / "allow_override.conf").read_text().replace("g = _, _", "g = _, _, _"))
    code, lines, _ = doctor({**healthy_env, "GATEWAY_CASBIN_MODEL": str(bad)})
    assert code == 1
    [line] = failures(lines)
    assert line.split()[1] == "config"
    assert f"GATEWAY_CASBIN_MODEL={bad} cannot be served" in line and "write g = _, _" in line


@pytest.fixture(scope="module")
def identity_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    require_e2e_tools(node=True)
    with running_oidc_provider(tmp_path_factory.mktemp("doctor-idp"), [CLIENT], []) as provider:
        yield provider


def test_identity_provider_reachable_then_not(
    healthy_env: dict[str, str], identity_provider: OidcProvider
) -> None:
    oidc = {
        "GATEWAY_OIDC_ISSUER": identity_provider.issuer,
        "GATEWAY_OIDC_CLIENT_ID": CLIENT["client_id"],
        "GATEWAY_OIDC_CLIENT_SECRET": CLIENT["client_secret"],
    }
    code, lines, _ = doctor({**healthy_env, **oidc})
    assert code == 0, lines
    assert any(line.startswith("ok") and line.split()[1] == "idp" for line in lines)

    unreachable = f"http://127.0.0.1:{free_port()}/idp"
    code, lines, _ = doctor({**healthy_env, **oidc, "GATEWAY_OIDC_ISSUER": unreachable})
    assert code == 1
    [line] = failures(lines)
    assert line.split()[1] == "idp"
    assert unreachable in line and "check GATEWAY_OIDC_ISSUER" in line
    assert CLIENT["client_secret"] not in "\n".join(lines)
