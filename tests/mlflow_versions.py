"""Other MLflow releases beside the pinned one, for the tests that check the route table per version.

The virtualenv holds the pinned MLflow (`mlflow==3.17.2`, pyproject.toml). Another release is laid
over it: `pip install --no-deps --target DIR mlflow==X mlflow-skinny==X`, and every process that
should see release X runs with `PYTHONPATH=DIR` (its `mlflow` package and dist-info shadow the
virtualenv's; the other dependencies are the virtualenv's). That is how 3.18.0 runs here: its
`mlflow-tracing==3.18.0` is not on the package index, so `pip install mlflow==3.18.0` fails, but
the overlay imports, enumerates its routes and serves. 3.16.1 installs the same way.

Installed once into `.venv/mlflow-versions/<version>` (or `$GATEWAY_TEST_MLFLOW_VERSIONS`),
under a lock, atomically (a half-finished install is never used), and reused afterwards: only the
package index is needed, and only the first time. `.ci/run` installs them before the suite:

    .venv/bin/python -m tests.mlflow_versions install

`references` writes docs/mlflow-routes/<version>.tsv, each release's routes as the enumerator
finds them (tests/integration/test_route_table.py fails when a file differs from its release):
an upgrade's new routes show as a diff.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gateway.authz.routes import PINNED_MLFLOW, SUPPORTED_MLFLOW
from tests.helpers import MlflowServer, start_mlflow

REPO = Path(__file__).resolve().parents[1]
# The releases the route table is checked against; the pinned one is the virtualenv's own.
VERSIONS = SUPPORTED_MLFLOW
OVERLAID = tuple(v for v in VERSIONS if v != PINNED_MLFLOW)
NEWEST = max(VERSIONS, key=lambda v: tuple(int(p) for p in v.split(".")))
OLDEST = min(VERSIONS, key=lambda v: tuple(int(p) for p in v.split(".")))
COMPLETE = "installed.json"


def cache_root() -> Path:
    configured = os.environ.get("GATEWAY_TEST_MLFLOW_VERSIONS")
    return Path(configured) if configured else REPO / ".venv" / "mlflow-versions"


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def installed(version: str) -> Path | None:
    """The overlay directory of ``version`` if it is complete; None for the pinned version."""
    if version == PINNED_MLFLOW:
        return None
    target = cache_root() / version
    if not (target / COMPLETE).is_file():
        raise FileNotFoundError(target)
    return target


def ensure(version: str) -> Path | None:
    """Install ``version``'s overlay unless it is there already; its directory (None: pinned)."""
    if version == PINNED_MLFLOW:
        return None
    root = cache_root()
    target = root / version
    with _locked(root):
        if (target / COMPLETE).is_file():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=root))
        try:
            packages = [f"mlflow=={version}", f"mlflow-skinny=={version}"]
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile"]
            subprocess.run(
                [*pip, "--target", str(staging), *packages],
                check=True,
                timeout=900,
            )
            (staging / COMPLETE).write_text(json.dumps({"packages": packages}) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def environment(version: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) set up to import MLflow ``version``."""
    env = dict(os.environ if base is None else base)
    overlay = ensure(version)
    if overlay is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(overlay), *filter(None, [env.get("PYTHONPATH")])])
    return env


def start_mlflow_version(
    version: str, workdir: Path, backend_store_uri: str | None = None
) -> MlflowServer:
    """`start_mlflow` of MLflow ``version`` (the pinned one is the virtualenv's own)."""
    overlay = ensure(version)
    extra = {"PYTHONPATH": str(overlay)} if overlay is not None else {}
    return start_mlflow(workdir, backend_store_uri=backend_store_uri, extra_env=extra)


REFERENCES = REPO / "docs" / "mlflow-routes"


def reference_lines(version: str, routes: frozenset[tuple[str, str]]) -> list[str]:
    """The route reference of MLflow ``version``: one line per (method, path) it serves, with
    the operation of the rule that judges it ("-": none, the gateway refuses it)."""
    from gateway.authz.routes import RULES

    operations = {(r.method, r.template): r.operation for r in RULES}
    header = f"# MLflow {version}: every (method, path) its server serves, and the rule judging it"
    rows = [f"{m}\t{p}\t{operations.get((m, p), '-')}" for m, p in sorted(routes)]
    return [header, "# written by: python -m tests.mlflow_versions references", *rows]


def enumerate_version(version: str) -> frozenset[tuple[str, str]]:
    from gateway.cli.routes import enumerate_installed

    overlay = ensure(version)
    found = enumerate_installed(sys.executable, {"PYTHONPATH": str(overlay)} if overlay else None)
    if found.version != version:
        raise RuntimeError(f"asked for MLflow {version}, enumerated {found.version}")
    return found.routes


def main(argv: list[str]) -> int:
    if argv[:1] == ["references"]:
        REFERENCES.mkdir(exist_ok=True)
        for version in argv[1:] or VERSIONS:
            lines = reference_lines(version, enumerate_version(version))
            (REFERENCES / f"{version}.tsv").write_text("\n".join(lines) + "\n")
            print(f"MLflow {version}: {len(lines) - 2} routes")
        return 0
    if argv[:1] != ["install"]:
        print(
            "usage: python -m tests.mlflow_versions install|references [VERSION ...]",
            file=sys.stderr,
        )
        return 2
    for version in argv[1:] or OVERLAID:
        print(f"MLflow {version}: {ensure(version) or 'the virtualenv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
