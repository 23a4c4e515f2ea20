"""One need, one value → the resources whose policies govern it: a table, one resolver a kind.

A resolver returns the resources to judge (found), raises NotFound (MLflow says it does not exist)
or LookupFailed (MLflow could not be asked); an object in no experiment comes back as an
`orphan:` resource. `RESOLVERS` has an entry for every Kind but the two judged whole by the
authorizer (GraphQL documents and OTLP exports); a test checks it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.authz.names import new_name_refusal
from gateway.authz.resolve import NotFound, Resolver, Resource, model_resource
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
    """The key of a need's kind in resolve.MISSING_MESSAGES."""
    return f"lookup:{need.subject}" if need.kind == Kind.LOOKUP else str(need.kind)
