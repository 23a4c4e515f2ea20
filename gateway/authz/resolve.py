"""Turn what a request names into the resources whose policies govern it.

A run, trace, logged model, dataset or GenAI object belongs to an experiment; an artifact path
starts with its experiment's id; a model version belongs to its registered model (named in the
request). Lookups go to MLflow with the gateway's own identity and are cached with bounds. Mappings
that never change (run → experiment) are kept long; those that can (an experiment's name, a
dataset's experiments) expire quickly and are dropped when the gateway sees them change.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from gateway.authz.canonical import Ambiguous
from gateway.authz.resources import (
    SKILL_PREFIX,
    Resource,
    canonical_artifact_path,
    experiment_resource,
    model_resource,
    orphan_resource,
    skill_identity,
    skill_resource,
    split_skill,
)
from gateway.cache import BoundedCache
from gateway.io_counts import count_io

LOOKUP_TIMEOUT = aiohttp.ClientTimeout(total=10)


class NotFound(Exception):
    """MLflow says the thing does not exist. Nothing is forwarded about it for anyone but an
    admin: the gateway answers MLflow's 404 itself (``refusals.as_missing``)."""


class LookupFailed(RuntimeError):
    """MLflow could not answer a lookup: fail closed."""


_MISSING = ("RESOURCE_DOES_NOT_EXIST",)
_EXPERIMENT_ID = re.compile(r"^[0-9]{1,19}\Z")

# GenAI objects keyed by their own id: where MLflow tells which experiment owns them.
LOOKUPS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # kind: (path, query parameter, JSON path to the experiment id)
    "issue": ("/api/3.0/mlflow/issues/{}", "", ("issue", "experiment_id")),
    "label_schema": (
        "/api/3.0/mlflow/label-schemas/get",
        "schema_id",
        ("label_schema", "experiment_id"),
    ),
    "review_queue": (
        "/api/3.0/mlflow/review-queues/get",
        "queue_id",
        ("review_queue", "experiment_id"),
    ),
    "prompt_job": ("/api/3.0/mlflow/prompt-optimization/jobs/{}", "", ("job", "experiment_id")),
}


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


class Resolver:
    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        upstream_url: str,
        max_entries: int = 50_000,
        on_lookup: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self._session = session
        self._base = upstream_url.rstrip("/")
        # Told the kind of every call made to MLflow (the metrics count them per kind).
        self._on_lookup = on_lookup
        # Never change once created: long lifetime, bounded size.
        self.owner_of = BoundedCache(max_entries, ttl=24 * 3600)
        # Can change (rename, dataset membership): short lifetime, dropped on change.
        self.experiment_names = BoundedCache(max_entries, ttl=30)
        self.dataset_experiments = BoundedCache(max_entries, ttl=30)
        self.model_users = BoundedCache(max_entries, ttl=30)
        # A registered model's name as sent -> as MLflow stores it (they differ where the
        # backend's collation matches names case-, space- or accent-insensitively).
        self.model_names = BoundedCache(max_entries, ttl=30)
        # A skill's identity as sent -> as MLflow stores it (the same collations).
        self.skill_names = BoundedCache(max_entries, ttl=30)

    async def _get(
        self, kind: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        self._on_lookup(kind)
        count_io("mlflow")
        try:
            async with self._session().get(
                self._base + path, params=params, timeout=LOOKUP_TIMEOUT
            ) as response:
                if response.status == 404:
                    raise NotFound(path)
                body = await response.json(content_type=None)
                if (
                    response.status == 400
                    and isinstance(body, dict)
                    and body.get("error_code") in _MISSING
                ):
                    raise NotFound(path)
                # 422: a FastAPI route refused the value (a skill name it does not accept).
                if response.status in (400, 422):
                    # Not a lookup we can answer: refuse rather than let MLflow act unjudged.
                    raise Ambiguous("MLflow rejects the id this request names")
                if response.status != 200 or not isinstance(body, dict):
                    raise LookupFailed(f"MLflow answered {response.status} to {path}")
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise LookupFailed(f"lookup {path} failed: {type(exc).__name__}") from exc

    async def listing(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """A read-only MLflow call with the gateway's identity (the console's pickers)."""
        return await self._get("listing", path, params)

    async def _cached(
        self, cache: BoundedCache, key: str, fetch: Callable[[], Awaitable[Any]]
    ) -> Any:
        value = cache.get(key)
        if value is None:
            value = await fetch()
            cache.put(key, value)
        return value

    async def experiment(self, experiment_id: str) -> Resource:
        if not _EXPERIMENT_ID.match(experiment_id):
            raise Ambiguous(f"invalid experiment id {experiment_id!r}")
        # MLflow reads the id as a number: "007" is experiment 7, and so is its policy object.
        experiment_id = str(int(experiment_id))

        async def fetch() -> str:
            data = await self._get(
                "experiment", "/api/2.0/mlflow/experiments/get", {"experiment_id": experiment_id}
            )
            return str(_dig(data, ("experiment", "name")) or "")

        name = await self._cached(self.experiment_names, experiment_id, fetch)
        return experiment_resource(experiment_id, name or None)

    async def experiment_by_name(self, name: str) -> Resource:
        data = await self._get(
            "experiment_by_name",
            "/api/2.0/mlflow/experiments/get-by-name",
            {"experiment_name": name},
        )
        experiment_id = str(_dig(data, ("experiment", "experiment_id")))
        # The experiment MLflow found, under its own name (on MySQL/MariaDB "SECRET" finds
        # "secret"): `experiment_name:` rules apply to that name, not to the spelling sent.
        stored = _dig(data, ("experiment", "name"))
        if not _EXPERIMENT_ID.match(experiment_id) or not isinstance(stored, str):
            raise LookupFailed("get-by-name answered no experiment")
        self.experiment_names.put(experiment_id, stored)
        return experiment_resource(experiment_id, stored)

    async def registered_model(self, name: str) -> Resource:
        """The registered model MLflow will act on for ``name``, under its stored name."""

        async def fetch() -> str:
            data = await self._get(
                "registered_model", "/api/2.0/mlflow/registered-models/get", {"name": name}
            )
            stored = _dig(data, ("registered_model", "name"))
            if not isinstance(stored, str) or not stored:
                raise LookupFailed("registered-models/get answered no model")
            return stored

        return model_resource(await self._cached(self.model_names, name, fetch))

    async def skill(self, identity: str) -> Resource:
        """The skill MLflow will act on for ``identity``, under its stored organization and name
        (on MySQL/MariaDB a lookup matches them as the collation does)."""
        organization, name = split_skill(identity)
        path = "/api/3.0/mlflow/skills/" + (
            f"@{quote(organization, safe='')}/" if organization else ""
        )
        path += quote(name, safe="")

        async def fetch() -> str:
            data = await self._get("skill", path)
            stored_name, stored_org = data.get("name"), data.get("organization") or ""
            if not isinstance(stored_name, str) or not isinstance(stored_org, str):
                raise LookupFailed("skills/get answered no skill")
            return skill_identity(stored_org, stored_name)

        return skill_resource(await self._cached(self.skill_names, identity, fetch))

    def policy_changed(self, removed: frozenset[str] | None) -> None:
        """Rules taken off a registered model (or a skill) mean it was renamed or deleted,
        perhaps on another replica: a spelling remembered for it may now name another one."""
        if removed is None or any(o.startswith("registered_model:") for o in removed):
            self.model_names.clear()
        if removed is None or any(o.startswith(SKILL_PREFIX) for o in removed):
            self.skill_names.clear()

    def remember_model(self, name: str) -> None:
        """A model MLflow just created (or renamed to) under this stored name."""
        self.model_names.put(name, name)

    async def _owner(
        self, key: str, path: str, params: dict[str, str] | None, where: tuple[str, ...]
    ) -> Resource:
        async def fetch() -> str:
            found = _dig(await self._get(key.split(":", 1)[0], path, params), where)
            # MLflow knows the object but places it in no experiment (or in something that is
            # not one): remembered as such, judged as an orphan.
            return str(found) if found is not None and _EXPERIMENT_ID.match(str(found)) else ""

        experiment_id = await self._cached(self.owner_of, key, fetch)
        if not experiment_id:
            kind, _, object_id = key.partition(":")
            return orphan_resource(kind, object_id)
        return await self.experiment(experiment_id)

    def remember_owner(self, kind: str, object_id: str, experiment_id: str) -> None:
        """What MLflow answered to a creation (CreateRun, CreateLoggedModel): the new object's
        experiment, known without a lookup."""
        if _EXPERIMENT_ID.match(experiment_id):
            self.owner_of.put(f"{kind}:{object_id}", experiment_id)

    def remember_experiment(self, experiment_id: str, name: str) -> None:
        """What CreateExperiment named and MLflow numbered: the name, known without a lookup."""
        if _EXPERIMENT_ID.match(experiment_id) and name:
            self.experiment_names.put(str(int(experiment_id)), name)

    def model_gained_version(self, logged_model_id: str, model_name: str) -> None:
        """A version of ``model_name`` was made from the logged model: its readers may load it.
        Amends what is remembered instead of forgetting it (no lookup on the next load)."""
        self.model_users.amend(logged_model_id, lambda names: sorted({*names, model_name}))

    async def run(self, run_id: str) -> Resource:
        return await self._owner(
            f"run:{run_id}",
            "/api/2.0/mlflow/runs/get",
            {"run_id": run_id},
            ("run", "info", "experiment_id"),
        )

    async def trace(self, trace_id: str) -> Resource:
        return await self._owner(
            f"trace:{trace_id}",
            f"/api/3.0/mlflow/traces/{quote(trace_id, safe='')}",
            None,
            ("trace", "trace_info", "trace_location", "mlflow_experiment", "experiment_id"),
        )

    async def logged_model(self, model_id: str) -> Resource:
        # A deleted model still belongs to its experiment, and MLflow serves it to a request
        # that says allow_deleted=true: the lookup asks for it the same way.
        return await self._owner(
            f"logged_model:{model_id}",
            f"/api/2.0/mlflow/logged-models/{quote(model_id, safe='')}",
            {"allow_deleted": "true"},
            ("model", "info", "experiment_id"),
        )

    async def lookup(self, kind: str, object_id: str) -> Resource:
        path, param, where = LOOKUPS[kind]
        if param:
            return await self._owner(f"{kind}:{object_id}", path, {param: object_id}, where)
        return await self._owner(
            f"{kind}:{object_id}", path.format(quote(object_id, safe="")), None, where
        )

    async def dataset(self, dataset_id: str) -> list[Resource]:
        path = f"/api/3.0/mlflow/datasets/{quote(dataset_id, safe='')}"

        async def fetch() -> list[str]:
            data = await self._get("dataset", path + "/experiment-ids")
            ids = [str(e) for e in data.get("experiment_ids", [])]
            if not ids:
                # MLflow answers "no experiments" for a dataset that does not exist too: ask
                # whether it exists (NotFound), or is in no experiment (an orphan).
                await self._get("dataset", path)
            return ids

        ids = await self._cached(self.dataset_experiments, dataset_id, fetch)
        if not ids:
            return [orphan_resource("dataset", dataset_id)]
        return [await self.experiment(e) for e in ids]

    async def artifact(self, raw_path: str) -> tuple[Resource, str | None]:
        """The owning experiment, and the logged model when the path is inside one."""
        parts = canonical_artifact_path(raw_path)
        if not parts:
            raise PermissionError("listing the whole artifact store is for admins")
        if not _EXPERIMENT_ID.match(parts[0]):
            raise Ambiguous("artifact paths start with an experiment id")
        logged_model = parts[2] if len(parts) > 2 and parts[1] == "models" else None
        return await self.experiment(parts[0]), logged_model

    async def models_using(self, logged_model_id: str) -> list[str]:
        """Registered models with a version made from the logged model (its readers may load it)."""

        async def fetch() -> list[str]:
            data = await self._get(
                "models_using",
                "/api/2.0/mlflow/model-versions/search",
                {"filter": f"source_path='models:/{logged_model_id}'"},
            )
            return sorted({str(v.get("name")) for v in data.get("model_versions", [])})

        if not re.fullmatch(r"m-[0-9a-f]{32}", logged_model_id):
            return []
        return list(await self._cached(self.model_users, logged_model_id, fetch))

    async def model_source(self, source: str) -> list[Resource]:
        """What a new model version's `source` points at; the caller must be able to read it."""
        if source.startswith("runs:/"):
            run_id = source[len("runs:/") :].split("/", 1)[0]
            return [await self.run(run_id)]
        if source.startswith("models:/m-"):
            return [await self.logged_model(source[len("models:/") :].split("/", 1)[0])]
        if source.startswith("models:/"):
            name = source[len("models:/") :].split("/", 1)[0].split("@", 1)[0]
            return [await self.registered_model(name)]
        if source.startswith("mlflow-artifacts:/"):
            resource, _ = await self.artifact(source[len("mlflow-artifacts:/") :].lstrip("/"))
            return [resource]
        raise PermissionError(
            "a model version's source must be a runs:/, models:/ or mlflow-artifacts:/ URI "
            "(other locations can only be registered by an admin)"
        )

    async def version_stage(self, name: str, version: str) -> str:
        """A model version's current stage, lower case (never cached: it is what may change)."""
        data = await self._get(
            "version_stage",
            "/api/2.0/mlflow/model-versions/get",
            {"name": name, "version": version},
        )
        return str(_dig(data, ("model_version", "current_stage")) or "none").lower()

    async def models_of_run(self, run_id: str) -> list[str]:
        """Names of the registered models with a version made from ``run_id``."""
        if not re.fullmatch(r"[0-9a-f]{32}", run_id):
            raise Ambiguous("invalid run id")
        data = await self._get(
            "models_of_run",
            "/api/2.0/mlflow/model-versions/search",
            {"filter": f"run_id='{run_id}'"},
        )
        return sorted({str(v.get("name")) for v in data.get("model_versions", [])})

    def forget_experiment(self, experiment_id: str) -> None:
        self.experiment_names.drop(experiment_id)

    def forget_dataset(self, dataset_id: str) -> None:
        self.dataset_experiments.drop(dataset_id)
