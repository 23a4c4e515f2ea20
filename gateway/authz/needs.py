"""One need, one value → the resources whose policies govern it: a table, one resolver a kind.

A resolver returns the resources to judge (found), raises NotFound (MLflow says it does not exist)
or LookupFailed (MLflow could not be asked); an object in no experiment comes back as an
`orphan:` resource. `RESOLVERS` has an entry for every Kind but the two judged whole by the
authorizer (GraphQL documents and OTLP exports); a test checks it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.authz.names import new_name_refusal
from gateway.authz.resolve import NotFound, Resolver
from gateway.authz.resources import (
    SKILL_ARTIFACT_ROOT,
    Resource,
    canonical_artifact_path,
    model_resource,
    skill_of_artifact,
    skill_resource,
)
from gateway.authz.routes import Kind, Need
from gateway.errors import INVALID_PARAMETER
from gateway.refusals import Refused

# Judged whole by the authorizer (every resource a document or export reaches), not one value.
JUDGED_WHOLE = frozenset({Kind.GRAPHQL, Kind.OTLP_TRACES})


def check_new_name(kind: str, name: str) -> None:
    if why := new_name_refusal(kind, name):
        raise Refused(INVALID_PARAMETER, f"Invalid name {name!r}: {why}.", why)


class NeedResolver:
    def __init__(self, resolver: Resolver) -> None:
        self.r = resolver
        self.resolvers: dict[Kind, Callable[[Need, str, bool], Awaitable[list[Resource]]]] = {
            Kind.EXPERIMENT: self._experiment,
            Kind.EXPERIMENT_NAME: self._experiment_name,
            Kind.EXPERIMENT_BY_NAME: self._experiment_by_name,
            Kind.RUN: self._run,
            Kind.TRACE: self._trace,
            Kind.EXISTING_TRACE: self._existing_trace,
            Kind.LOGGED_MODEL: self._logged_model,
            Kind.DATASET: self._dataset,
            Kind.REGISTERED_MODEL: self._registered_model,
            Kind.ARTIFACT: self._artifact,
            Kind.MODEL_SOURCE: self._model_source,
            Kind.PROMPT_URI: self._prompt_uri,
            Kind.ARTIFACT_LOCATION: self._artifact_location,
            Kind.LOOKUP: self._lookup,
            Kind.SKILL: self._skill,
            Kind.OBJECT: self._object,
            Kind.NAMED: self._named,
        }

    async def resolve(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return await self.resolvers[need.kind](need, value, admin)

    async def _experiment(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return [await self.r.experiment(value)]

    async def _experiment_name(self, need: Need, value: str, admin: bool) -> list[Resource]:
        check_new_name("experiment", value)
        return [Resource((f"experiment_name:{value}",), f"experiment name {value!r}")]

    async def _experiment_by_name(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return [await self.r.experiment_by_name(value)]

    async def _run(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return [await self.r.run(value)]

    async def _trace(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return [await self.r.trace(value)]

    async def _existing_trace(self, need: Need, value: str, admin: bool) -> list[Resource]:
        try:
            return [await self.r.trace(value)]
        except NotFound:
            return []  # a new trace: the experiment it goes to is judged by another need

    async def _logged_model(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return [await self._readable_through_models(await self.r.logged_model(value), value, need)]

    async def _dataset(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return await self.r.dataset(value)

    async def _registered_model(self, need: Need, value: str, admin: bool) -> list[Resource]:
        if need.action == "create":
            # A new name is judged as sent; where the backend would match it to an existing
            # model, MLflow refuses the creation itself.
            check_new_name("registered_model", value)
            return [model_resource(value)]
        return [await self.r.registered_model(value)]

    async def _artifact(self, need: Need, value: str, admin: bool) -> list[Resource]:
        if admin and not value.strip("/"):
            return []
        parts = canonical_artifact_path(value)
        if parts and parts[0] == SKILL_ARTIFACT_ROOT:
            return await self._skill_artifact(need, parts, admin)
        experiment, logged_model = await self.r.artifact(value)
        if logged_model is None:
            return [experiment]
        return [await self._readable_through_models(experiment, logged_model, need)]

    async def _model_source(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return [] if admin else await self.r.model_source(value)

    async def _prompt_uri(self, need: Need, value: str, admin: bool) -> list[Resource]:
        name = value.removeprefix("prompts:/").split("/", 1)[0].split("@", 1)[0]
        return [await self.r.registered_model(name)]

    async def _artifact_location(self, need: Need, value: str, admin: bool) -> list[Resource]:
        if admin:
            return []
        raise PermissionError("only admins choose an experiment's artifact location")

    async def _lookup(self, need: Need, value: str, admin: bool) -> list[Resource]:
        return [await self.r.lookup(need.subject or "", value)]

    async def _skill(self, need: Need, value: str, admin: bool) -> list[Resource]:
        """``value`` is the identity the request names (`name` or `@org/name`)."""
        if need.action == "create":
            # A new skill is judged as sent; MLflow refuses to create one that exists.
            check_new_name("skill", value)
            return [skill_resource(value)]
        return [await self.r.skill(value)]

    async def registration(self, value: str) -> tuple[Resource, bool]:
        """A skill a registration names: (it, True) when it exists, (its new name, False) when
        the registration would create it."""
        try:
            return await self.r.skill(value), True
        except NotFound:
            check_new_name("skill", value)
            return skill_resource(value), False

    async def _skill_artifact(self, need: Need, parts: list[str], admin: bool) -> list[Resource]:
        """Content MLflow stored for a skill version (skills/[@<org>/]<name>/<token>/…): readable
        by the skill's readers. MLflow writes it itself; no client writes there but an admin."""
        if admin:
            return []
        if need.action != "read":
            raise PermissionError(
                "skill content is stored by MLflow's skill registry, not uploaded"
            )
        identity = skill_of_artifact(parts)
        if identity is None:
            raise PermissionError("listing every skill's content is for admins")
        return [await self.r.skill(identity)]

    async def _object(self, need: Need, value: str, admin: bool) -> list[Resource]:
        name = need.subject or ""
        return [Resource((name,), name)]

    async def _named(self, need: Need, value: str, admin: bool) -> list[Resource]:
        name = (need.subject or "") + value
        return [Resource((name,), name)]

    async def _readable_through_models(
        self, experiment: Resource, logged_model: str, need: Need
    ) -> Resource:
        """A logged model (and its files) may also be read by readers of the registered models
        made from it: a model-only reader can load `models:/<name>@champion` without reading the
        training experiment. Only for reading: writing still needs the experiment."""
        if need.action != "read":
            return experiment
        models = await self.r.models_using(logged_model)
        names = experiment.names + tuple(f"registered_model:{m}" for m in models)
        return Resource(names, experiment.label)


def missing_kind(need: Need) -> str:
    """The key of a need's kind in resolve.MISSING_MESSAGES (or missing_message's own)."""
    return f"lookup:{need.subject}" if need.kind == Kind.LOOKUP else str(need.kind)
