"""The deployment files, checked without a Docker engine or a cluster.

Dockerfiles: base images pinned, non-root, no secrets, every file they copy or run exists, the
gateway image has a health check and no MLflow. docker-compose.yml: valid against the Compose
Specification schema (the copy check-jsonschema ships), only the gateway publishes a port, MLflow
only on the internal network. Kubernetes: rendered with kustomize (kubectl's) when available,
every object valid against the Kubernetes schemas kubernetes-validate ships, and the NetworkPolicy
admits only gateway pods to MLflow. Cloud Run and Railway: consistent with the images and the
scripts that apply them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.services import REPO, Deployment

DOCKERFILES = {"gateway": REPO / "Dockerfile", "mlflow": REPO / "mlflow" / "Dockerfile"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CONNECTION_STRING|DATABASE_URL", re.I)
PINNED_IMAGE = re.compile(r"^[\w./-]+(:[\w.-]*\d[\w.-]*)?(@sha256:[0-9a-f]{64})?$")
KUBERNETES = REPO / "deploy" / "kubernetes"
CLOUDRUN = REPO / "deploy" / "cloudrun"
RAILWAY = REPO / "deploy" / "railway"


def _pinned(image: str) -> bool:
    match = PINNED_IMAGE.match(image)
    return bool(match and (match.group(1) or match.group(2))) and not image.endswith(":latest")


# --- Dockerfiles ------------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def exec_form(arguments: str) -> list[str]:
    return json.loads(arguments[arguments.index("[") :])


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_images_are_pinned(name: str) -> None:
    bases = [
        args.split()[0] for keyword, args in instructions(DOCKERFILES[name]) if keyword == "FROM"
    ]
    assert bases
    assert all(_pinned(image) for image in bases), bases


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_runs_as_a_non_root_user(name: str) -> None:
    users = [args for keyword, args in final_stage(DOCKERFILES[name]) if keyword == "USER"]
    assert users, "no USER in the final stage: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_no_secret_in_the_image(name: str) -> None:
    for keyword, args in instructions(DOCKERFILES[name]):
        if keyword in {"ENV", "ARG"}:
            assert not SECRET_NAME.search(args), f"{keyword} {args}"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_file_copied_and_run_exists(name: str) -> None:
    dockerfile = DOCKERFILES[name]
    context = REPO  # both images are built from the repository
    copied: dict[str, Path] = {}
    for keyword, args in instructions(dockerfile):
        if keyword == "COPY" and "--from=" not in args:
            *sources, destination = args.split()
            for source in sources:
                assert (context / source).exists(), f"COPY {source}: missing in {context}"
                target = destination.rstrip("/") + "/" + Path(source).name
                copied[destination if len(sources) == 1 else target] = context / source
    run = [
        word
        for keyword, args in final_stage(dockerfile)
        if keyword in {"ENTRYPOINT", "CMD", "HEALTHCHECK"}
        for word in exec_form(args)
        if word.startswith("/") and not word.startswith("/.gateway/")  # an HTTP path, not a file
    ]
    assert run, "nothing the image runs names a file"
    for path in run:
        assert path in copied, f"{path} is run but never copied into the image"
        assert copied[path].is_file()


def test_the_gateway_image_builds_with_every_packaged_file() -> None:
    """gateway/policy_files/ links to policies/ (the shipped casbin model and bootstrap policy):
    COPY keeps a link as a link, and setuptools leaves out a link whose target is not there, so
    the build stage must copy the targets too — else the image's gateway cannot start."""
    build = instructions(DOCKERFILES["gateway"])
    build = build[: next(i for i, (keyword, _) in enumerate(build[1:], 1) if keyword == "FROM")]
    copied = [
        (REPO / source).resolve()
        for keyword, args in build
        if keyword == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    ]
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["gateway"]
    links = [path for path in (REPO / "gateway").rglob("*") if path.is_symlink()]
    assert {link.name for link in links} >= {"model.conf", "bootstrap.csv"}
    for link in links:
        target = link.resolve()
        assert target.is_file(), f"{link} links to nothing"
        assert any(target == c or target.is_relative_to(c) for c in copied), (
            f"{link.relative_to(REPO)} links to {target.relative_to(REPO)}, which the gateway "
            "image's build stage never copies"
        )
        packaged = link.relative_to(REPO / "gateway")
        assert any(packaged.match(pattern) for pattern in package_data), (
            f"{packaged} is not in [tool.setuptools.package-data]"
        )


def test_gateway_image_checks_health_and_has_no_mlflow() -> None:
    steps = final_stage(DOCKERFILES["gateway"])
    [healthcheck] = [args for keyword, args in steps if keyword == "HEALTHCHECK"]
    assert "/.gateway/healthz" in healthcheck
    [entrypoint] = [exec_form(args) for keyword, args in steps if keyword == "ENTRYPOINT"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["mlflow-gateway"] and "mlflow-gateway" in scripts
    text = "\n".join(args for _, args in instructions(DOCKERFILES["gateway"]))
    assert "pip install --no-cache-dir ." in text and "[dev]" not in text
    assert "mlflow==" not in text and "COPY mlflow" not in text
    # What `pip install .` brings: the package's dependencies, transitively, without extras.
    closure = _dependency_closure("mlflow-gateway")
    assert "mlflow-gateway" in closure and "aiohttp" in closure
    assert not {"mlflow", "mlflow-skinny", "mlflow-tracing"} & closure


def _dependency_closure(distribution: str) -> set[str]:
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [distribution]
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            todo.append(requirement.name)
    return seen


def test_mlflow_image_ships_the_tested_mlflow_and_every_driver() -> None:
    pins = {}
    for line in (REPO / "mlflow" / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert f"mlflow=={pins['mlflow']}" in pyproject["project"]["optional-dependencies"]["dev"]
    assert importlib.metadata.version("mlflow") == pins["mlflow"] == "3.17.2"
    wanted = {"psycopg2-binary", "pymysql", "boto3", "google-cloud-storage", "azure-storage-blob"}
    assert wanted <= set(pins)


def test_gateway_healthcheck_script(deployments: dict[str, Deployment]) -> None:
    gateway = deployments["sqlite+local"].gateway
    assert gateway is not None
    script = REPO / "deploy" / "gateway" / "healthcheck.py"
    env = {"PATH": "/usr/bin:/bin", "GATEWAY_PORT": str(gateway.port)}
    answer = subprocess.run([sys.executable, script, "/.gateway/healthz"], env=env, check=False)
    assert answer.returncode == 0
    env["GATEWAY_PORT"] = "9"  # nothing listens there
    answer = subprocess.run(
        [sys.executable, script, "/.gateway/healthz"], env=env, capture_output=True, check=False
    )
    assert answer.returncode == 1


# --- docker-compose.yml -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath(
        "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema really judges: a misspelt key is an error.
    broken = {**compose, "services": {**compose["services"], "x": {"image": "a:1", "portz": []}}}
    assert list(validator.iter_errors(broken))


def test_only_the_gateway_is_published_and_mlflow_is_internal(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"gateway", "mlflow", "redis", "postgres"}
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"gateway"}
    assert services["gateway"]["ports"] == ["${GATEWAY_PUBLISHED_PORT:-5000}:5000"]
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("mlflow", "redis", "postgres"):
        assert services[name]["networks"] == ["backend"], name
        assert "network_mode" not in services[name]
    assert set(services["gateway"]["networks"]) == {"frontend", "backend"}
    assert services["gateway"]["environment"]["GATEWAY_UPSTREAM_URL"] == "http://mlflow:5000"
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"] == "mlflow:5000"


def test_compose_secrets_come_from_the_env_file(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for key, value in service.get("environment", {}).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                pytest.fail(f"{key} is set inline; use a secret (*_FILE)")
            assert "password" not in str(value).lower() or key.endswith("_FILE"), key
    example = (REPO / ".env.example").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    used = set(re.findall(r"\$\{([A-Z_]+)", (REPO / "docker-compose.yml").read_text()))
    sources = {s["environment"] for s in compose["secrets"].values()}
    assert used | sources <= defined
    for service in compose["services"].values():
        image = service["image"]
        assert _pinned(image), image
        if "build" in service:
            build = service["build"]
            build = {"context": build} if isinstance(build, str) else build
            assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()


def test_the_mlflow_image_build_checks_the_route_table() -> None:
    """The MLflow image's build runs `mlflow-gateway routes check` on the MLflow it installed,
    with the gateway copied from the repository, its build context (Compose's too)."""
    steps = instructions(DOCKERFILES["mlflow"])
    runs = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert "mlflow-gateway routes check --python /opt/mlflow/venv/bin/python" in runs
    assert "exit $status" in runs  # the check's exit status is the step's
    copied = [args.split() for keyword, args in steps if keyword == "COPY" and "--from" not in args]
    assert {sources[-2] for sources in copied} >= {"gateway", "policies"}
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    build = compose["services"]["mlflow"]["build"]
    assert (build["context"], build["dockerfile"]) == (".", "mlflow/Dockerfile")
    railway = json.loads((RAILWAY / "mlflow.railway.json").read_text())
    assert railway["build"]["dockerfilePath"] == "mlflow/Dockerfile"


# --- Kubernetes -------------------------------------------------------------------------------


def rendered_manifests() -> list[dict[str, Any]]:
    """`kubectl kustomize` when kubectl is installed, else the files kustomization.yaml lists."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        text = subprocess.run(
            [kubectl, "kustomize", str(KUBERNETES)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return [
        doc
        for resource in kustomization["resources"]
        for doc in yaml.safe_load_all((KUBERNETES / resource).read_text())
        if doc
    ]


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in rendered_manifests()}


def test_every_object_is_valid_kubernetes(manifests: dict[tuple[str, str], dict]) -> None:
    version = kubernetes_validate.latest_version()
    for (kind, name), doc in manifests.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{kind}/{name}: {exc.message} at {list(exc.path)}")
    broken = json.loads(json.dumps(manifests[("Deployment", "gateway")]))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_network_policy_lets_only_gateway_pods_reach_mlflow(
    manifests: dict[tuple[str, str], dict],
) -> None:
    pods = {
        name: doc["spec"]["template"]["metadata"]["labels"]
        for (kind, name), doc in manifests.items()
        if kind == "Deployment"
    }
    policy = manifests[("NetworkPolicy", "mlflow-only-from-gateway")]["spec"]
    selected = [
        n
        for n, labels in pods.items()
        if _labels_match(policy["podSelector"]["matchLabels"], labels)
    ]
    assert selected == ["mlflow"]
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}  # no namespaceSelector, no ipBlock
    admitted = [
        n for n, labels in pods.items() if _labels_match(peer["podSelector"]["matchLabels"], labels)
    ]
    assert admitted == ["gateway"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5000}]
    service = manifests[("Service", "mlflow")]["spec"]
    assert service["type"] == "ClusterIP"
    assert _labels_match(service["selector"], pods["mlflow"])
    ingress_backends = [
        path["backend"]["service"]["name"]
        for (kind, _), doc in manifests.items()
        if kind == "Ingress"
        for rule in doc["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert ingress_backends == ["gateway"]


def test_gateway_deployment_is_production_shaped(manifests: dict[tuple[str, str], dict]) -> None:
    deployment = manifests[("Deployment", "gateway")]["spec"]
    assert deployment["replicas"] == 2
    pod = deployment["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/.gateway/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/.gateway/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    ingress = manifests[("Ingress", "gateway")]["spec"]
    assert ingress["tls"][0]["secretName"]


def test_no_secret_is_inlined_in_the_manifests(manifests: dict[tuple[str, str], dict]) -> None:
    assert not [name for kind, name in manifests if kind == "Secret"]
    for (kind, name), doc in manifests.items():
        if kind == "ConfigMap":
            assert not [k for k in doc["data"] if SECRET_NAME.search(k)], name
        if kind != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            assert _pinned(container["image"]), container["image"]
            for variable in container.get("env", []):
                if SECRET_NAME.search(variable["name"]):
                    assert variable["name"].endswith("_FILE") or "valueFrom" in variable


# --- Cloud Run and Railway --------------------------------------------------------------------


def test_cloud_run_services(tmp_path: Path) -> None:
    script = (CLOUDRUN / "deploy.sh").read_text()
    assert subprocess.run(["bash", "-n", str(CLOUDRUN / "deploy.sh")], check=False).returncode == 0
    services = {}
    for name in ("mlflow", "gateway"):
        text = (CLOUDRUN / f"{name}.service.yaml").read_text()
        placeholders = set(re.findall(r"\$\{(\w+)\}", text))
        exported = {
            word for line in re.findall(r"^export ([\w ]+)$", script, re.M) for word in line.split()
        }
        assert placeholders <= exported, placeholders - exported
        services[name] = yaml.safe_load(Template(text).substitute({p: "x" for p in placeholders}))
    assert services["mlflow"]["metadata"]["annotations"]["run.googleapis.com/ingress"] == "internal"
    assert services["gateway"]["metadata"]["annotations"]["run.googleapis.com/ingress"] == "all"
    egress = services["gateway"]["spec"]["template"]["metadata"]["annotations"]
    assert egress["run.googleapis.com/vpc-access-egress"] == "all-traffic"
    assert (
        "run.googleapis.com/cloudsql-instances"
        in services["mlflow"]["spec"]["template"]["metadata"]["annotations"]
    )
    for name, service in services.items():
        [container] = service["spec"]["template"]["spec"]["containers"]
        tag = container["image"].rsplit("/", 1)[1]
        assert f'/{tag}"' in script, f"{name}: {tag} is not what deploy.sh builds"
        for variable in container["env"]:
            if SECRET_NAME.search(variable["name"]):
                assert "secretKeyRef" in variable.get("valueFrom", {}), variable["name"]


def test_railway_services() -> None:
    for name, health in (("gateway", "/.gateway/healthz"), ("mlflow", "/health")):
        config = json.loads((RAILWAY / f"{name}.railway.json").read_text())
        assert config["build"]["builder"] == "DOCKERFILE"
        assert config["deploy"]["healthcheckPath"] == health
        variables = dict(
            line.split("=", 1)
            for line in (RAILWAY / f"{name}.env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        for key, value in variables.items():
            if SECRET_NAME.search(key):
                secret = urlsplit(value).password if "://" in value else value
                assert not secret or secret.startswith("${{"), f"{key} holds a literal secret"
    mlflow_env = (RAILWAY / "mlflow.env").read_text()
    assert "MLFLOW_BACKEND_STORE_URI=${{Postgres.DATABASE_URL}}" in mlflow_env
    assert (
        "GATEWAY_UPSTREAM_URL=http://${{mlflow.RAILWAY_PRIVATE_DOMAIN}}:5000"
        in (RAILWAY / "gateway.env").read_text()
    )
