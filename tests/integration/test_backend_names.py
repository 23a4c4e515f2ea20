"""Names the backend store compares loosely: the gateway must judge the object MLflow acts on.

On a MySQL/MariaDB backend store the database's default collation (`utf8mb4_general_ci` on this
machine's MariaDB 10.11) compares names case-insensitively, ignores trailing spaces and folds
accents: `GET registered-models/get?name=SECRET-X` answers the model `secret-x`, and a tag set on
`{"name": "Secret-X"}` lands on `secret-x`. SQLite and PostgreSQL compare exactly. A gateway that
judges the spelling in the request rather than the object MLflow finds lets a deny rule on
`registered_model:secret-x` be walked around.

The same world is built on two backends, SQLite (the session's `mlflow_server`) and MariaDB
(`mariadb_mlflow_server`), each behind a gateway of its own:

- bob (team-b) may manage every registered model and edit every experiment, except the secret
  ones: deny rules on their exact names — `read` and `edit` (which also blocks `manage`), and
  `promote:*` and `alias:*`, which `manage` includes and an `edit` deny does not take away. So
  every refusal below is a deny rule at work, and a request that gets past it shows.
- For every spelling MariaDB matches (`SECRET_SPELLINGS`; each was checked against MLflow on
  MariaDB), every operation naming a secret model, prompt or experiment must be refused with a
  4xx (a 5xx is a crash, not a defence). A write gets a model (or experiment) of its own, read
  back straight from MLflow before and after: it must be unchanged.
- Positive controls: bob reaches the non-denied `shared-…` model and experiment under their exact
  names (both backends) and under every matching spelling (MariaDB); alice (no rule but the
  bootstrap policy) owns the model she created as `Alices-Model-…` and, on MariaDB, reaches it
  under other spellings too, since MLflow does. The gateway must judge the real name, not refuse
  every spelling it does not know.
- On MariaDB, creating a second spelling of an existing name fails in MLflow and makes bob the
  owner of nothing.
"""

from __future__ import annotations

import difflib
import http.client
import json
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway

JSON = "application/json"
REFUSED = "X-Gateway-Refused"
RM, MV = "/api/2.0/mlflow/registered-models", "/api/2.0/mlflow/model-versions"
EXP = "/api/2.0/mlflow/experiments"
BACKENDS = ("sqlite", "mariadb")
REDIS_DB = {"sqlite": 14, "mariadb": 15}
BOOTSTRAP = (
    "p, role:admin, *, *, allow\n"
    "p, group:authenticated, experiment_name:*, create, allow\n"
    "p, group:authenticated, registered_model:*, create, allow\n"
)
IS_PROMPT = "mlflow.prompt.is_prompt"

# Spellings of a lower-case name that MariaDB's utf8mb4_general_ci finds the name by (measured:
# MLflow 3.17.2 on MariaDB 10.11.19 answers GetRegisteredModel and GetExperimentByName for each).
# Not matched there, so not here: a leading space, a tab, a no-break space, a combining accent
# (e + U+0301), full-width letters, U+2010 for the hyphen.
SPELLINGS: dict[str, Callable[[str], str]] = {
    "upper case": str.upper,
    "lower case": str.lower,
    "capitalised": str.capitalize,
    "trailing space": lambda name: name + " ",
    "accented": lambda name: name.replace("e", "\u00e9", 1),  # é
    "long s": lambda name: name.replace("s", "\u017f", 1),  # long s, folded to s
}
SECRET_SPELLINGS = ("upper case", "capitalised", "trailing space", "accented", "long s")
OWNER_SPELLINGS = ("lower case", "upper case", "trailing space", "accented")


def spell(name: str, spelling: str) -> str:
    spelt = SPELLINGS[spelling](name)
    assert spelt != name, f"{spelling!r} does not change {name!r}"
    return spelt


def q(path: str, /, **params: str) -> str:
    return f"{path}?{urlencode(params, quote_via=quote)}"


# -- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    refused_by: str | None  # the gateway's X-Gateway-Refused header, if it refused
    body: bytes

    def ok(self) -> bool:
        return 200 <= self.status < 300

    def refused(self) -> bool:
        """A 4xx: the request was turned away (a 5xx is a crash, not a refusal)."""
        return 400 <= self.status < 500

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else {}

    def __str__(self) -> str:
        return f"{self.status} (refused by gateway: {self.refused_by}) {self.body[:300]!r}"


def send(port: int, method: str, target: str, token: str | None, body: Any = None) -> Answer:
    """One request over a fresh connection; ``target`` is sent as given (already encoded), a
    ``bytes`` body as it is, any other body as JSON."""
    headers = {"Connection": "close"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if isinstance(body, bytes):
        data = body
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = JSON
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, target, body=data, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.getheader(REFUSED), response.read())
    finally:
        connection.close()


def _request_text(who: str, method: str, target: str, body: Any) -> str:
    shown = "" if body is None else " " + json.dumps(body, ensure_ascii=False)
    return f"{who}: {method} {target}{shown}"


def _diff(before: Any, after: Any) -> str:
    old = json.dumps(before, indent=1, sort_keys=True, ensure_ascii=False).splitlines()
    new = json.dumps(after, indent=1, sort_keys=True, ensure_ascii=False).splitlines()
    lines = [
        line.strip()
        for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]
    return " ".join(lines[:16])


# -- the operations ---------------------------------------------------------------------------

Request = tuple[str, str, Any]  # method, target, JSON body


@dataclass(frozen=True)
class Op:
    name: str
    request: Callable[[str], Request]  # the request naming the model (or prompt) so spelt


def _graphql_versions(name: str) -> Request:
    query = "{ mlflowSearchModelVersions(input: {filter: %s}) { modelVersions { name version } } }"
    return "POST", "/graphql", {"query": query % json.dumps(f"name='{name}'")}


MODEL_READS = (
    Op("GetRegisteredModel", lambda n: ("GET", q(RM + "/get", name=n), None)),
    Op("GetLatestVersions", lambda n: ("GET", q(RM + "/get-latest-versions", name=n), None)),
    Op("GetModelVersion", lambda n: ("GET", q(MV + "/get", name=n, version="1"), None)),
    Op(
        "GetModelVersionDownloadUri",
        lambda n: ("GET", q(MV + "/get-download-uri", name=n, version="1"), None),
    ),
    Op(
        "GetModelVersionArtifact",
        lambda n: (
            "GET",
            q("/model-versions/get-artifact", name=n, version="1", path="MLmodel"),
            None,
        ),
    ),
    Op(
        "GetModelVersionByAlias champion",
        lambda n: ("GET", q(RM + "/alias", name=n, alias="champion"), None),
    ),
)
PROMPT_READS = (
    Op("prompt GetRegisteredModel", lambda n: ("GET", q(RM + "/get", name=n), None)),
    Op(
        "prompt GetModelVersion (the template)",
        lambda n: ("GET", q(MV + "/get", name=n, version="1"), None),
    ),
)
MODEL_WRITES = (
    Op(
        "SetRegisteredModelTag",
        lambda n: ("POST", RM + "/set-tag", {"name": n, "key": "bob", "value": "was here"}),
    ),
    Op(
        "DeleteRegisteredModelTag",
        lambda n: ("DELETE", RM + "/delete-tag", {"name": n, "key": "guard"}),
    ),
    Op(
        "UpdateRegisteredModel description",
        lambda n: ("PATCH", RM + "/update", {"name": n, "description": "changed by bob"}),
    ),
    Op(
        "RenameRegisteredModel",
        lambda n: (
            "POST",
            RM + "/rename",
            {"name": n, "new_name": f"bob-took-{secrets.token_hex(4)}"},
        ),
    ),
    Op("DeleteRegisteredModel", lambda n: ("DELETE", RM + "/delete", {"name": n})),
    Op(
        "SetModelVersionTag",
        lambda n: (
            "POST",
            MV + "/set-tag",
            {"name": n, "version": "1", "key": "bob", "value": "was here"},
        ),
    ),
    Op(
        "DeleteModelVersionTag",
        lambda n: ("DELETE", MV + "/delete-tag", {"name": n, "version": "1", "key": "guard"}),
    ),
    Op(
        "UpdateModelVersion description",
        lambda n: (
            "PATCH",
            MV + "/update",
            {"name": n, "version": "1", "description": "changed by bob"},
        ),
    ),
    *(
        Op(
            f"TransitionModelVersionStage to {stage}",
            lambda n, stage=stage: (
                "POST",
                MV + "/transition-stage",
                {"name": n, "version": "1", "stage": stage, "archive_existing_versions": False},
            ),
        )
        for stage in ("Staging", "Production")
    ),
    Op("DeleteModelVersion", lambda n: ("DELETE", MV + "/delete", {"name": n, "version": "1"})),
    Op(
        "SetRegisteredModelAlias champion",
        lambda n: ("POST", RM + "/alias", {"name": n, "alias": "champion", "version": "2"}),
    ),
    Op(
        "DeleteRegisteredModelAlias champion",
        lambda n: ("DELETE", RM + "/alias", {"name": n, "alias": "champion"}),
    ),
)


# -- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    backend: str
    gw: Gateway
    mlflow_port: int
    tag: str
    tokens: dict[str, str] = field(default_factory=dict)
    secret: str = ""  # the secret model the reads are about
    prompt: str = ""
    shared: str = ""  # no deny rule: bob may manage it
    alice_model: str = ""
    run_id: str = ""
    secret_source: dict[str, str] = field(default_factory=dict)
    exps: dict[str, str] = field(default_factory=dict)  # name -> id
    exp_secret: str = ""
    exp_shared: str = ""
    exp_cold: str = ""  # renamed by id, nothing spelt
    exp_poisoned: dict[str, str] = field(default_factory=dict)  # spelling -> experiment name
    bob_exp: str = ""  # an experiment id bob may edit (for his traces)
    write_models: dict[tuple[str, str], str] = field(default_factory=dict)  # (op, spelling)

    def __repr__(self) -> str:  # keeps tokens out of assertion messages
        return f"World({self.backend}, gateway port {self.gw.port})"

    @property
    def secret_names(self) -> set[str]:
        return {self.secret, self.prompt, *self.write_models.values()}

    def call(self, who: str, method: str, target: str, body: Any = None) -> Answer:
        """Through the gateway as ``who``."""
        return send(self.gw.port, method, target, self.tokens[who], body)

    def direct(self, method: str, target: str, body: Any = None) -> Answer:
        """Straight to MLflow, no gateway: how things really are."""
        return send(self.mlflow_port, method, target, None, body)

    def mlflow(self, method: str, target: str, body: Any = None) -> Any:
        """Straight to MLflow, building the world: must succeed."""
        answer = self.direct(method, target, body)
        assert answer.ok(), (method, target, str(answer))
        return answer.json()

    def model_state(self, name: str) -> tuple[Any, ...]:
        """The model, its versions (stages, tags, descriptions) and aliases, from MLflow."""
        model = self.direct("GET", q(RM + "/get", name=name))
        versions = self.direct("GET", q(MV + "/search", filter=f"name='{name}'"))
        return (model.status, model.json(), versions.status, versions.json())

    def experiment_state(self, experiment_id: str) -> tuple[Any, ...]:
        answer = self.direct("GET", q(EXP + "/get", experiment_id=experiment_id))
        return answer.status, answer.json()

    def make_model(self, name: str) -> None:
        """A guarded model: a tag and a description, two versions (v1 tagged), champion -> v1."""
        tags = [{"key": "guard", "value": "admin"}]
        self.mlflow("POST", RM + "/create", {"name": name, "tags": tags, "description": "guarded"})
        self.mlflow("POST", MV + "/create", {"name": name, **self.secret_source, "tags": tags})
        self.mlflow("POST", MV + "/create", {"name": name, **self.secret_source})
        self.mlflow("POST", RM + "/alias", {"name": name, "alias": "champion", "version": "1"})

    def make_experiment(self, name: str) -> str:
        experiment_id = self.mlflow("POST", EXP + "/create", {"name": name})["experiment_id"]
        self.exps[name] = experiment_id
        return experiment_id


def _build(w: World) -> list[str]:
    """Every object, straight in MLflow as the admin would have them; the policy lines."""
    t = w.tag
    w.exp_secret, w.exp_shared = f"exp-secret-{t}", f"exp-shared-{t}"
    w.exp_cold = f"exp-secret-{t}-c"
    w.exp_poisoned = {s: f"exp-secret-{t}-p{i}" for i, s in enumerate(SECRET_SPELLINGS)}
    w.make_experiment(w.exp_secret)
    run = w.mlflow("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": w.exps[w.exp_secret]})
    w.run_id = run["run"]["info"]["run_id"]
    artifacts = f"{w.exps[w.exp_secret]}/{w.run_id}/artifacts"
    answer = send(
        w.mlflow_port,
        "PUT",
        f"/api/2.0/mlflow-artifacts/artifacts/{artifacts}/model/MLmodel",
        None,
        b"flavors: {} # secret",
    )
    assert answer.ok(), str(answer)
    w.secret_source = {"source": f"mlflow-artifacts:/{artifacts}/model", "run_id": w.run_id}

    w.secret, w.shared, w.prompt = f"secret-{t}", f"shared-{t}", f"secret-prompt-{t}"
    w.alice_model = f"Alices-Model-{t}"
    index = 0
    for op in MODEL_WRITES:
        for spelling in SECRET_SPELLINGS:
            w.write_models[(op.name, spelling)] = f"secret-{t}-{index}"
            index += 1
    with ThreadPoolExecutor(4) as pool:
        made = [
            pool.submit(w.make_model, n) for n in (w.secret, w.shared, *w.write_models.values())
        ]
        names = (w.exp_shared, w.exp_cold, *w.exp_poisoned.values(), f"bob-exp-{t}")
        made += [pool.submit(w.make_experiment, name) for name in names]
        for future in made:
            future.result()
    w.bob_exp = w.exps[f"bob-exp-{t}"]
    prompt_tag = [{"key": IS_PROMPT, "value": "true"}]
    w.mlflow("POST", RM + "/create", {"name": w.prompt, "tags": prompt_tag})
    template = {"key": "mlflow.prompt.text", "value": "the secret template {{x}}"}
    version = {"name": w.prompt, "source": "dummy-source", "tags": [*prompt_tag, template]}
    w.mlflow("POST", MV + "/create", version)

    lines = [
        "p, group:team-b, registered_model:*, manage",
        "p, group:team-b, experiment:*, edit",
    ]
    for name in sorted(w.secret_names):
        for right in ("read", "edit", "promote:*", "alias:*"):
            lines.append(f"p, group:team-b, registered_model:{name}, {right}, deny")
    for name in (w.exp_secret, w.exp_cold, *w.exp_poisoned.values()):
        lines.append(f"p, group:team-b, experiment_name:{name}, read, deny")
    return lines


def _until(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _world(
    backend: str, server: MlflowServer, redis_server: RedisServer, data: Path
) -> Iterator[World]:
    policy = data / "policy.csv"
    policy.write_text(BOOTSTRAP)
    gw = start_gateway(
        server.url,
        redis_server.db_url(REDIS_DB[backend]),
        data,
        ready_path="/.gateway/readyz",
        GATEWAY_POLICY_FILE=str(policy),
        GATEWAY_LOCKOUT_IP_THRESHOLD="100000",
    )
    try:
        w = World(backend, gw, server.port, secrets.token_hex(3))
        # The CLI takes about a second a call: side by side, and beside the building.
        with ThreadPoolExecutor(4) as pool:
            users = [
                pool.submit(gw.add_user, "alice", "alice-password-1", "team-a"),
                pool.submit(gw.add_user, "bob", "bob-password-12", "team-b"),
            ]
            admin = pool.submit(lambda: gw.admin_token)
            lines = _build(w)
            for future in users:
                future.result()
            tokens = {u: pool.submit(gw.token, u, "names") for u in ("alice", "bob")}
            pool.submit(gw.cli, "policy", "import", "-", input="\n".join(lines) + "\n").result()
            w.tokens = {"admin": admin.result(), **{u: f.result() for u, f in tokens.items()}}
        # The import reaches the gateway over Redis: wait until bob's grant works.
        assert _until(lambda: w.call("bob", "GET", q(RM + "/get", name=w.shared)).ok())
        created = w.call("alice", "POST", RM + "/create", {"name": w.alice_model})
        assert created.ok(), str(created)
        yield w
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def sqlite_world(
    mlflow_server: MlflowServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    yield from _world("sqlite", mlflow_server, redis_server, tmp_path_factory.mktemp("gw-names"))


@pytest.fixture(scope="module")
def mariadb_world(
    mariadb_mlflow_server: MlflowServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    data = tmp_path_factory.mktemp("gw-names")
    yield from _world("mariadb", mariadb_mlflow_server, redis_server, data)


@pytest.fixture
def world(request: pytest.FixtureRequest) -> World:
    """The world of the backend the test is parametrized with (built once per module)."""
    return request.getfixturevalue(f"{request.param}_world")


def _params(backends: tuple[str, ...], things: tuple[Any, ...], spellings: tuple[str, ...]):
    return [
        pytest.param(
            backend, thing, spelling, id=f"{backend}-{getattr(thing, 'name', thing)}-{spelling}"
        )
        for backend in backends
        for thing in things
        for spelling in spellings
    ]


def _refusal_problem(w: World, who: str, request: Request, answer: Answer) -> str | None:
    if answer.refused():
        return None
    what = "crashed (a 5xx is no refusal)" if answer.status >= 500 else "got through"
    return f"[{w.backend}] {_request_text(who, *request)} {what}: {answer}"


# -- bob is refused under every spelling ----------------------------------------------------------


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(BACKENDS, MODEL_READS + PROMPT_READS, SECRET_SPELLINGS),
    indirect=["world"],
)
def test_secret_model_read_refused_under_another_spelling(
    world: World, op: Op, spelling: str
) -> None:
    real = world.prompt if op.name.startswith("prompt ") else world.secret
    request = op.request(spell(real, spelling))
    answer = world.call("bob", *request)
    problem = _refusal_problem(world, "bob", request, answer)
    if problem:
        pytest.fail(f"{problem}\n(the deny rules are on {real!r})", pytrace=False)


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(BACKENDS, MODEL_WRITES, SECRET_SPELLINGS),
    indirect=["world"],
)
def test_secret_model_write_refused_under_another_spelling(
    world: World, op: Op, spelling: str
) -> None:
    real = world.write_models[(op.name, spelling)]
    request = op.request(spell(real, spelling))
    before = world.model_state(real)
    answer = world.call("bob", *request)
    after = world.model_state(real)
    problems = [p for p in [_refusal_problem(world, "bob", request, answer)] if p]
    if after != before:
        problems.append(f"the model {real!r} changed in MLflow: {_diff(before, after)}")
    if problems:
        pytest.fail("\n".join(problems) + f"\n(the deny rules are on {real!r})", pytrace=False)


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(
        BACKENDS, (Op("GraphQL mlflowSearchModelVersions", _graphql_versions),), SECRET_SPELLINGS
    ),
    indirect=["world"],
)
def test_graphql_search_by_another_spelling_shows_nothing_secret(
    world: World, op: Op, spelling: str
) -> None:
    """MLflow's search filter compares exactly even on MariaDB: refusing is not required, but no
    answer may carry a secret model's versions."""
    request = op.request(spell(world.secret, spelling))
    answer = world.call("bob", *request)
    assert answer.ok() or answer.refused(), (
        f"[{world.backend}] {_request_text('bob', *request)}: {answer}"
    )
    if answer.ok():
        versions = (answer.json().get("data") or {}).get("mlflowSearchModelVersions") or {}
        leaked = [v for v in versions.get("modelVersions") or [] if v["name"] in world.secret_names]
        assert not leaked, f"[{world.backend}] {_request_text('bob', *request)} showed {leaked}"


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(("mariadb",), ("LinkPromptsToTrace",), SECRET_SPELLINGS),
    indirect=["world"],
)
def test_linking_the_secret_prompt_under_another_spelling_is_refused(
    world: World, op: str, spelling: str
) -> None:
    """bob links the secret prompt to his own trace (linking needs `read` on the prompt). MariaDB
    only: MLflow does not check that the prompt exists, so on SQLite a second spelling links a
    prompt that is not there, which takes nothing from anyone."""
    trace_id = f"tr-{secrets.token_hex(16)}"
    location = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": world.bob_exp}}
    info = {"trace_id": trace_id, "trace_location": location, "state": "OK"}
    info["request_time"] = "2026-01-01T00:00:00Z"
    world.mlflow("POST", "/api/3.0/mlflow/traces", {"trace": {"trace_info": info}})
    versions = [{"name": spell(world.prompt, spelling), "version": "1"}]
    request: Request = (
        "POST",
        "/api/2.0/mlflow/traces/link-prompts",
        {"trace_id": trace_id, "prompt_versions": versions},
    )
    answer = world.call("bob", *request)
    problem = _refusal_problem(world, "bob", request, answer)
    if problem:
        pytest.fail(f"{problem}\n(the deny rules are on {world.prompt!r})", pytrace=False)


# -- experiments: get-by-name, and the name the gateway remembers for an id ------------------------


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(BACKENDS, ("GetExperimentByName",), SECRET_SPELLINGS),
    indirect=["world"],
)
def test_secret_experiment_by_another_spelling_is_refused(
    world: World, op: str, spelling: str
) -> None:
    request: Request = (
        "GET",
        q(EXP + "/get-by-name", experiment_name=spell(world.exp_secret, spelling)),
        None,
    )
    answer = world.call("bob", *request)
    problem = _refusal_problem(world, "bob", request, answer)
    if problem:
        rule = f"experiment_name:{world.exp_secret}"
        pytest.fail(f"{problem}\n(the deny rule is on {rule})", pytrace=False)


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(BACKENDS, ("GetExperiment by id",), SECRET_SPELLINGS),
    indirect=["world"],
)
def test_a_spelling_someone_looked_up_does_not_rename_the_experiment_for_the_gateway(
    world: World, op: str, spelling: str
) -> None:
    """The admin looks the secret experiment up by another spelling (allowed: admins may read
    everything); bob's request by id must still be judged on the experiment's real name."""
    looked_up = q(EXP + "/get-by-name", experiment_name=spell(world.exp_secret, spelling))
    world.call("admin", "GET", looked_up)
    request: Request = ("GET", q(EXP + "/get", experiment_id=world.exps[world.exp_secret]), None)
    answer = world.call("bob", *request)
    problem = _refusal_problem(world, "bob", request, answer)
    if problem:
        rule = f"experiment_name:{world.exp_secret}"
        pytest.fail(
            f"{problem}\n(after admin: GET {looked_up}; the deny rule is on {rule})", pytrace=False
        )


def _rename_secret_experiment(world: World, name: str, context: str) -> None:
    experiment_id = world.exps[name]
    request: Request = (
        "POST",
        EXP + "/update",
        {"experiment_id": experiment_id, "new_name": f"bob-took-{secrets.token_hex(4)}"},
    )
    before = world.experiment_state(experiment_id)
    answer = world.call("bob", *request)
    after = world.experiment_state(experiment_id)
    problems = [p for p in [_refusal_problem(world, "bob", request, answer)] if p]
    if after != before:
        problems.append(f"experiment {experiment_id} changed in MLflow: {_diff(before, after)}")
    if problems:
        pytest.fail(
            "\n".join(problems) + f"\n({context}the deny rule is on {name!r})", pytrace=False
        )


@pytest.mark.parametrize("world", BACKENDS, indirect=True)
def test_renaming_the_secret_experiment_by_id_is_refused(world: World) -> None:
    _rename_secret_experiment(world, world.exp_cold, "")


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(BACKENDS, ("UpdateExperiment by id",), SECRET_SPELLINGS),
    indirect=["world"],
)
def test_renaming_by_id_after_a_lookup_by_another_spelling_is_refused(
    world: World, op: str, spelling: str
) -> None:
    name = world.exp_poisoned[spelling]
    looked_up = q(EXP + "/get-by-name", experiment_name=spell(name, spelling))
    world.call("admin", "GET", looked_up)
    _rename_secret_experiment(world, name, f"after admin: GET {looked_up}; ")


# -- positive controls ----------------------------------------------------------------------------


def _must_succeed(world: World, who: str, request: Request) -> Answer:
    answer = world.call(who, *request)
    assert answer.ok() and answer.refused_by is None, (
        f"[{world.backend}] {_request_text(who, *request)} should work: {answer}"
    )
    return answer


def _model_tags(world: World, name: str) -> dict[str, str]:
    model = world.mlflow("GET", q(RM + "/get", name=name))["registered_model"]
    return {t["key"]: t["value"] for t in model.get("tags", [])}


def _bob_reaches_shared(world: World, spelt: str, exp_spelt: str, key: str) -> None:
    answer = _must_succeed(world, "bob", ("GET", q(RM + "/get", name=spelt), None))
    assert answer.json()["registered_model"]["name"] == world.shared
    tag = {"name": spelt, "key": key, "value": "set by bob"}
    _must_succeed(world, "bob", ("POST", RM + "/set-tag", tag))
    assert _model_tags(world, world.shared).get(key) == "set by bob", (
        f"[{world.backend}] bob's tag {key!r} (set on {spelt!r}) is not on {world.shared!r}"
    )
    by_name = ("GET", q(EXP + "/get-by-name", experiment_name=exp_spelt), None)
    answer = _must_succeed(world, "bob", by_name)
    assert answer.json()["experiment"]["experiment_id"] == world.exps[world.exp_shared]


@pytest.mark.parametrize("world", BACKENDS, indirect=True)
def test_bob_reaches_the_shared_model_and_experiment_by_their_names(world: World) -> None:
    _bob_reaches_shared(world, world.shared, world.exp_shared, "exact")


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(("mariadb",), ("shared model and experiment",), SECRET_SPELLINGS),
    indirect=["world"],
)
def test_bob_reaches_the_shared_model_and_experiment_under_another_spelling(
    world: World, op: str, spelling: str
) -> None:
    key = f"spelt-{SECRET_SPELLINGS.index(spelling)}"
    _bob_reaches_shared(
        world, spell(world.shared, spelling), spell(world.exp_shared, spelling), key
    )


@pytest.mark.parametrize("world", BACKENDS, indirect=True)
def test_alice_owns_the_model_she_created(world: World) -> None:
    lines = world.gw.cli("policy", "list", "--subject", "user:alice").stdout.splitlines()
    owner = f"p, user:alice, registered_model:{world.alice_model}, manage, allow"
    assert owner in lines, f"[{world.backend}] no owner rule for alice: {lines}"
    answer = _must_succeed(world, "alice", ("GET", q(RM + "/get", name=world.alice_model), None))
    assert answer.json()["registered_model"]["name"] == world.alice_model


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(("mariadb",), ("owner rule",), OWNER_SPELLINGS),
    indirect=["world"],
)
def test_alice_reaches_her_model_under_another_spelling(
    world: World, op: str, spelling: str
) -> None:
    """MLflow finds alice's `Alices-Model-…` under this spelling, so her owner rule must decide."""
    spelt = spell(world.alice_model, spelling)
    answer = _must_succeed(world, "alice", ("GET", q(RM + "/get", name=spelt), None))
    assert answer.json()["registered_model"]["name"] == world.alice_model
    key = f"spelt-{OWNER_SPELLINGS.index(spelling)}"
    _must_succeed(
        world, "alice", ("POST", RM + "/set-tag", {"name": spelt, "key": key, "value": "v"})
    )
    assert _model_tags(world, world.alice_model).get(key) == "v"


# -- creation under another spelling (MariaDB) ----------------------------------------------------


@pytest.mark.parametrize(
    ("world", "op", "spelling"),
    _params(("mariadb",), ("create",), SECRET_SPELLINGS),
    indirect=["world"],
)
def test_creating_another_spelling_of_an_existing_name_fails_and_grants_nothing(
    world: World, op: str, spelling: str
) -> None:
    problems = []
    for request in (
        ("POST", RM + "/create", {"name": spell(world.secret, spelling)}),
        ("POST", EXP + "/create", {"name": spell(world.exp_secret, spelling)}),
    ):
        answer = world.call("bob", *request)
        code = answer.json().get("error_code") if answer.refused() else None
        if code != "RESOURCE_ALREADY_EXISTS":
            problems.append(
                f"{_request_text('bob', *request)}: expected MLflow's RESOURCE_ALREADY_EXISTS, "
                f"got {answer}"
            )
    lines = world.gw.cli("policy", "list", "--subject", "user:bob").stdout.splitlines()
    owned = [line for line in lines if line.startswith("p, user:bob, ")]
    if owned:
        problems.append(f"bob was made an owner: {owned}")
    if problems:
        pytest.fail(f"[{world.backend}] " + "\n".join(problems), pytrace=False)
    assert world.model_state(world.secret)[0] == 200
