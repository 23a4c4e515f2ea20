"""The attack catalogue (tests/integration/test_attacks.py: every case and scenario) against the
oldest and the newest supported MLflow releases, on SQLite. The same tests, imported; only the
setups differ. A file of its own so that the suite's parallel workers (`pytest -n`, one file a
worker at a time) run these setups beside the pinned release's."""

from __future__ import annotations

import pytest

from tests.helpers import MlflowServer
from tests.integration.test_attacks import *  # noqa: F403 - the catalogue's tests and fixtures
from tests.integration.test_attacks import BACKENDS


@pytest.fixture(scope="module", params=["oldest-mlflow", "newest-mlflow"])
def backend(request: pytest.FixtureRequest) -> MlflowServer:
    return request.getfixturevalue(BACKENDS[request.param])
