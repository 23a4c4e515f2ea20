"""The world the attack catalogue runs in: two teams (A and B, plus carol, who reads every
experiment but A's) with their things and policy, raw requests to the gateway or straight to MLflow,
placeholders, and the snapshots and markers that tell whether team A's things changed or leaked."""

from __future__ import annotations

import difflib
import gzip
import http.client
import json
import re
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tests.attacks.catalogue import JSON, Attack, Step, _loc, _trace
from tests.helpers import Gateway

REFUSED = "X-Gateway-Refused"
SECRET = "secret of team A"
SECRET_SPAN = "A-SECRET-SPAN"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def ok(self) -> bool:
        return 200 <= self.status < 300

    def __str__(self) -> str:
        refused = self.headers.get(REFUSED.lower())
        return f"{self.status} (refused by gateway: {refused}) {self.body[:300]!r}"


def send(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None,
    timeout: float = 30,
) -> Answer:
    """One request, byte-for-byte as given: no normalisation of the target or headers."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


_PLACEHOLDER = re.compile(r"<([a-z]+)\.([a-z_]+)>")


@dataclass
class World:
    gw: Gateway
    mlflow_port: int
    values: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)
    cached_snapshot: dict[str, Any] | None = None

    def __repr__(self) -> str:  # keeps tokens out of assertion messages
        return f"World(gateway port {self.gw.port})"

    # -- requests ---------------------------------------------------------------------------------

    def port_and_auth(self, who: str) -> tuple[int, list[tuple[str, str]]]:
        if who == "mlflow":
            return self.mlflow_port, []
        if who == "anonymous":
            return self.gw.port, []
        return self.gw.port, [("Authorization", f"Bearer {self.tokens[who]}")]

    def call(self, method: str, path: str, payload: Any = None, who: str = "admin") -> Any:
        """A plain JSON call that must succeed (building the world)."""
        port, auth = self.port_and_auth(who)
        body = None if payload is None else json.dumps(payload).encode()
        answer = send(port, method, path, [*auth, ("Content-Type", JSON)], body)
        assert answer.ok(), (method, path, str(answer))
        return json.loads(answer.body) if answer.body.strip() else {}

    def direct(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        """Straight to MLflow (no gateway): how things really are."""
        body = None if payload is None else json.dumps(payload).encode()
        answer = send(self.mlflow_port, method, path, [("Content-Type", JSON)], body)
        try:
            return answer.status, json.loads(answer.body)
        except ValueError:
            return answer.status, answer.body.decode("latin-1")

    # -- placeholders -----------------------------------------------------------------------------

    def fill(self, text: str, fresh: dict[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda m: self.lookup(f"{m[1]}.{m[2]}", fresh), text)

    def lookup(self, key: str, fresh: dict[str, str]) -> str:
        if key in self.values:
            return self.values[key]
        if key.endswith("_hex"):  # a trace id without its "tr-"
            return self.lookup(key.removesuffix("_hex"), fresh).removeprefix("tr-")
        if key.endswith("_upper"):
            return self.lookup(key.removesuffix("_upper"), fresh).upper()
        if key not in fresh:
            fresh[key] = self.make(key)
        return fresh[key]

    def make(self, key: str) -> str:
        team, what = key.split(".")
        if team == "new":
            return {
                "name": f"attack-{secrets.token_hex(4)}",
                "hex": secrets.token_hex(16),
                "span": secrets.token_hex(8),
            }[what]
        experiment = self.values[f"{team}.exp"]
        if what == "fresh_trace":
            trace_id = f"tr-{secrets.token_hex(16)}"
            self.call("POST", "/api/3.0/mlflow/traces", _trace(trace_id, experiment))
            return trace_id
        if what == "fresh_lm":
            payload = {"experiment_id": experiment, "name": "fresh"}
            answer = self.call("POST", "/api/2.0/mlflow/logged-models", payload)
            return answer["model"]["info"]["model_id"]
        raise KeyError(key)

    def encode(self, body: Any, wrap: tuple[str, ...], fresh: dict[str, str]) -> bytes | None:
        if body is None:
            return None
        text = body if isinstance(body, str) else json.dumps(body)
        data = self.fill(text, fresh).encode()
        for step in wrap:
            if step == "json-string":
                data = json.dumps(data.decode()).encode()
            elif step == "utf-16":
                data = data.decode().encode("utf-16")
            elif step == "bom":
                data = b"\xef\xbb\xbf" + data
            elif step == "gzip":
                data = gzip.compress(data)
        return data

    def attack(self, case: Attack, fresh: dict[str, str]) -> Answer:
        port, auth = self.port_and_auth(case.who)
        headers = auth + [(k, self.fill(v, fresh)) for k, v in case.headers]
        body = self.encode(case.body, case.wrap, fresh)
        if body is not None and case.content_type:
            headers.append(("Content-Type", case.content_type))
        return send(port, case.method, self.fill(case.path, fresh), headers, body)

    def step(self, step: Step, fresh: dict[str, str]) -> Answer:
        port, auth = self.port_and_auth(step.who)
        body = self.encode(step.body, (), fresh)
        headers = auth + ([("Content-Type", JSON)] if body is not None else [])
        return send(port, step.method, self.fill(step.path, fresh), headers, body)

    # -- what team A has, and what must not leak --------------------------------------------------

    def markers(self, fresh: dict[str, str]) -> list[str]:
        """Strings only team A's things contain."""
        v = self.values
        keys = ("a.name", "a.run", "a.model", "a.lm", "a.trace", "a.ds")
        return (
            [v[k] for k in keys]
            + [f for k, f in fresh.items() if k.startswith("a.")]
            + [
                SECRET,
                SECRET_SPAN,
            ]
        )

    def snapshot(self) -> dict[str, Any]:
        """Team A's things (and B's promotion-guarded versions), read straight from MLflow."""
        v = self.values
        a_file = f"/api/2.0/mlflow-artifacts/artifacts/{v['a.exp']}/{v['a.run']}/artifacts"
        trace_dir = f"/api/2.0/mlflow-artifacts/artifacts/{v['a.exp']}/traces/{v['a.trace']}"
        linked = f"run_id = '{v['a.run']}'"
        reads: dict[str, tuple[str, str, Any]] = {
            "experiment": (
                "GET",
                f"/api/2.0/mlflow/experiments/get?experiment_id={v['a.exp']}",
                None,
            ),
            "runs": (
                "POST",
                "/api/2.0/mlflow/runs/search",
                {"experiment_ids": [v["a.exp"]], "run_view_type": "ALL"},
            ),
            "model": ("GET", f"/api/2.0/mlflow/registered-models/get?name={v['a.model']}", None),
            "versions": (
                "GET",
                "/api/2.0/mlflow/model-versions/search?"
                + urlencode({"filter": f"name = '{v['a.model']}'"}),
                None,
            ),
            "version 1": (
                "GET",
                f"/api/2.0/mlflow/model-versions/get?name={v['a.model']}&version=1",
                None,
            ),
            "logged models": (
                "POST",
                "/api/2.0/mlflow/logged-models/search",
                {"experiment_ids": [v["a.exp"]]},
            ),
            "traces": (
                "POST",
                "/api/3.0/mlflow/traces/search",
                {"locations": [_loc(v["a.exp"])], "max_results": 500},
            ),
            "traces linked to A's run": (
                "POST",
                "/api/3.0/mlflow/traces/search",
                {"locations": [_loc(v["a.exp"]), _loc(v["b.exp"])], "filter": linked},
            ),
            "artifacts": (
                "GET",
                f"/api/2.0/mlflow-artifacts/artifacts?path={v['a.exp']}/{v['a.run']}/artifacts",
                None,
            ),
            "artifact roots": (
                "GET",
                f"/api/2.0/mlflow-artifacts/artifacts?path={v['a.exp']}",
                None,
            ),
            "secret": ("GET", f"{a_file}/secret.txt", None),
            "trace data": ("GET", f"{trace_dir}/artifacts/traces.json", None),
            "dataset": ("GET", f"/api/3.0/mlflow/datasets/{v['a.ds']}/experiment-ids", None),
            "datasets": (
                "POST",
                "/api/3.0/mlflow/datasets/search",
                {"experiment_ids": [v["a.exp"]]},
            ),
            "e versions": (
                "GET",
                f"/api/2.0/mlflow/registered-models/get?name={v['e.model']}",
                None,
            ),
            "s versions": (
                "GET",
                f"/api/2.0/mlflow/registered-models/get?name={v['s.model']}",
                None,
            ),
        }
        with ThreadPoolExecutor(8) as pool:
            answers = pool.map(lambda spec: self.direct(*spec), reads.values())
            return dict(zip(reads, answers, strict=True))


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What changed, as a short unified diff per snapshot entry."""
    out = []
    for key in before:
        if before[key] != after.get(key):
            old = json.dumps(before[key], indent=1, sort_keys=True).splitlines()
            new = json.dumps(after.get(key), indent=1, sort_keys=True).splitlines()
            lines = [
                line
                for line in difflib.unified_diff(old, new, lineterm="", n=0)
                if line[:1] in "+-" and line[:3] not in ("---", "+++")
            ]
            out.append(f"[{key}] " + " ".join(line.strip() for line in lines[:12]))
    return "; ".join(out)


def _team(world: World, label: str, tag: str) -> None:
    """An experiment with a run, a logged model, a trace, a dataset, a secret artifact, and a
    registered model with a version from the run."""
    v = world.values
    name = f"team-{label}-{tag}"
    experiment = world.call("POST", "/api/2.0/mlflow/experiments/create", {"name": name})
    exp = experiment["experiment_id"]
    run = world.call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp})
    run_id = run["run"]["info"]["run_id"]
    lm = world.call("POST", "/api/2.0/mlflow/logged-models", {"experiment_id": exp, "name": "lm"})
    trace_id = f"tr-{secrets.token_hex(16)}"
    world.call("POST", "/api/3.0/mlflow/traces", _trace(trace_id, exp))
    ds = world.call(
        "POST",
        "/api/3.0/mlflow/datasets/create",
        {"name": f"ds-{label}-{tag}", "experiment_ids": [exp]},
    )
    model = f"attack-model-{label}-{tag}"
    world.call("POST", "/api/2.0/mlflow/registered-models/create", {"name": model})
    world.call(
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        {"name": model, "source": f"runs:/{run_id}/model", "run_id": run_id},
    )
    port, auth = world.port_and_auth("admin")
    secret = f"secret of team {label.upper()}".encode()
    path = f"/api/2.0/mlflow-artifacts/artifacts/{exp}/{run_id}/artifacts/secret.txt"
    assert send(port, "PUT", path, auth, secret).ok()
    v.update(
        {
            f"{label}.exp": exp,
            f"{label}.name": name,
            f"{label}.run": run_id,
            f"{label}.lm": lm["model"]["info"]["model_id"],
            f"{label}.trace": trace_id,
            f"{label}.ds": ds["dataset"]["dataset_id"],
            f"{label}.model": model,
        }
    )


def _build(w: World) -> None:
    """Teams A and B, the extra models and the policy; A's version 2 comes from B's run."""
    tag = secrets.token_hex(3)
    _team(w, "a", tag)
    _team(w, "b", tag)
    v = w.values
    # A's trace data, as the MLflow client stores it beside the trace.
    port, auth = w.port_and_auth("admin")
    data = json.dumps({"spans": [{"name": SECRET_SPAN}]}).encode()
    path = f"/api/2.0/mlflow-artifacts/artifacts/{v['a.exp']}/traces/{v['a.trace']}/artifacts"
    assert send(port, "PUT", path + "/traces.json", auth, data).ok()
    # Version 2 of A's model comes from B's run: B's run is linked to A's model.
    source = {"source": f"runs:/{v['b.run']}/model", "run_id": v["b.run"]}
    w.call("POST", "/api/2.0/mlflow/model-versions/create", {"name": v["a.model"], **source})
    w.call(
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        {"name": v["a.model"], "alias": "champion", "version": "1"},
    )
    # B's models guarded by promotion rights: e (edit), s (edit + promote:staging).
    for label in ("e", "s"):
        name = f"attack-model-{label}-{tag}"
        w.call("POST", "/api/2.0/mlflow/registered-models/create", {"name": name})
        w.call("POST", "/api/2.0/mlflow/model-versions/create", {"name": name, **source})
        v[f"{label}.model"] = name
    lines = [
        f"p, group:team-a, experiment:{v['a.exp']}, manage",
        f"p, group:team-a, registered_model:{v['a.model']}, manage",
        f"p, group:team-b, experiment:{v['b.exp']}, manage",
        f"p, group:team-b, registered_model:{v['b.model']}, manage",
        f"p, group:team-b, registered_model:{v['e.model']}, edit",
        f"p, group:team-b, registered_model:{v['s.model']}, edit",
        f"p, group:team-b, registered_model:{v['s.model']}, promote:staging",
        "p, group:team-c, experiment:*, read",
        f"p, group:team-c, experiment:{v['a.exp']}, read, deny",
    ]
    w.gw.cli("policy", "import", "-", input="\n".join(lines) + "\n")
