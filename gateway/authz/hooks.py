"""Bookkeeping after MLflow said yes: owners of new things, policies that follow a rename.

The creator of an experiment, registered model or skill becomes its owner (`manage`). Renaming a
registered model moves the rules on its old name to the new one; deleting it (or a skill) removes
them, so a new one with the old name inherits nothing. Other hooks keep the resolver's memory
true (what a creation named, what a change made stale). One handler per `Hook`, in a table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.authn.principal import Principal
from gateway.authz.canonical import Params
from gateway.authz.enforcer import Enforcer
from gateway.authz.owners import OwnerRules
from gateway.authz.resolve import Resolver
from gateway.authz.routes import Hook
from gateway.policy_lines import Rule

# Creations whose answer names the new object's experiment (remembered: no lookup later):
# hook -> (field of the answer, resolver kind, field of its info holding the new id).
CREATED = {
    Hook.RUN_CREATED: ("run", "run", "run_id"),
    Hook.LOGGED_MODEL_CREATED: ("model", "logged_model", "model_id"),
}


@dataclass(frozen=True)
class Success:
    """What a hook is told: the request as judged and MLflow's answer to it."""

    hook: Hook
    principal: Principal
    params: Params
    response: dict[str, Any]
    # Registered model names as the request sent them -> as MLflow stores them.
    stored_names: Mapping[str, str]
    # Skills as the request named them -> as MLflow stores them, and the skills the request was
    # judged to create.
    stored_skills: Mapping[str, str] = field(default_factory=dict)
    new_skills: tuple[str, ...] = ()

    def first(self, name: str) -> str | None:
        values = self.params.values(name)
        return values[0] if values else None

    def stored_model(self) -> str:
        sent = self.first("name") or ""
        return self.stored_names.get(sent, sent)


class Hooks:
    def __init__(
        self, enforcer: Enforcer, resolver: Resolver, owners: OwnerRules | None = None
    ) -> None:
        self.enforcer = enforcer
        self.resolver = resolver
        # Owner rules through the journal (off the request's critical path) when given.
        self.owners = owners
        self.handlers: dict[Hook, Callable[[Success], Awaitable[list[str]]]] = {
            Hook.EXPERIMENT_CREATED: self._experiment_created,
            Hook.EXPERIMENT_RENAMED: self._experiment_renamed,
            Hook.RUN_CREATED: self._remember_owner,
            Hook.LOGGED_MODEL_CREATED: self._remember_owner,
            Hook.TRACE_STARTED: self._trace_started,
            Hook.MODEL_CREATED: self._model_created,
            Hook.MODEL_RENAMED: self._model_renamed,
            Hook.MODEL_DELETED: self._model_deleted,
            Hook.VERSION_CREATED: self._version_created,
            Hook.VERSION_DELETED: self._version_deleted,
            Hook.DATASET_CHANGED: self._dataset_changed,
            Hook.SKILL_CREATED: self._skill_created,
            Hook.SKILL_DELETED: self._skill_deleted,
        }

    async def after_success(
        self,
        hook: Hook,
        principal: Principal,
        params: Params,
        response: dict[str, Any],
        stored_names: Mapping[str, str] | None = None,
        stored_skills: Mapping[str, str] | None = None,
        new_skills: tuple[str, ...] = (),
    ) -> list[str]:
        """Run ``hook``; returns what changed, for the audit log."""
        success = Success(
            hook, principal, params, response, stored_names or {}, stored_skills or {}, new_skills
        )
        return await self.handlers[hook](success)

    async def _own(self, success: Success, obj: str) -> list[str]:
        rule = Rule(f"user:{success.principal.subject}", obj, "manage")
        if self.owners is not None:
            await self.owners.grant(rule, actor=success.principal.subject)
        else:
            await self.enforcer.add([rule], actor=success.principal.subject)
        return [f"added '{rule}'"]

    async def _experiment_created(self, success: Success) -> list[str]:
        experiment_id = success.response.get("experiment_id")
        if experiment_id is None:
            return []
        self.resolver.remember_experiment(str(experiment_id), success.first("name") or "")
        return await self._own(success, f"experiment:{experiment_id}")

    async def _experiment_renamed(self, success: Success) -> list[str]:
        if experiment_id := success.first("experiment_id"):
            self.resolver.forget_experiment(experiment_id)
        return []

    async def _remember_owner(self, success: Success) -> list[str]:
        field, kind, id_field = CREATED[success.hook]
        info = (success.response.get(field) or {}).get("info") or {}
        object_id, experiment_id = info.get(id_field), info.get("experiment_id")
        if isinstance(object_id, str) and experiment_id is not None:
            self.resolver.remember_owner(kind, object_id, str(experiment_id))
        return []

    async def _trace_started(self, success: Success) -> list[str]:
        for trace_id in success.params.values("trace.trace_info.trace_id"):
            self.resolver.owner_of.drop(f"trace:{trace_id}")
        return []

    async def _model_created(self, success: Success) -> list[str]:
        name = (success.response.get("registered_model") or {}).get("name")
        if not name:
            return []
        changed = await self._own(success, f"registered_model:{name}")
        self.resolver.remember_model(name)
        return changed

    async def _model_renamed(self, success: Success) -> list[str]:
        old = success.stored_model()
        answer = success.response.get("registered_model") or {}
        new = answer.get("name") or success.first("new_name")
        if not old or not new:
            return []
        self.resolver.model_names.clear()
        moved = await self.enforcer.replace_object(
            f"registered_model:{old}", f"registered_model:{new}", success.principal.subject
        )
        self.resolver.remember_model(new)
        return [f"moved {moved} rule(s) from registered_model:{old} to registered_model:{new}"]

    async def _model_deleted(self, success: Success) -> list[str]:
        self.resolver.model_users.clear()
        self.resolver.model_names.clear()
        name = success.stored_model()
        if not name:
            return []
        removed = await self.enforcer.replace_object(
            f"registered_model:{name}", None, success.principal.subject
        )
        return [f"removed {removed} rule(s) on registered_model:{name}"]

    async def _version_created(self, success: Success) -> list[str]:
        # Readers of the model may now load the logged model it was made from.
        source = success.first("source") or ""
        name = (success.response.get("model_version") or {}).get("name")
        if source.startswith("models:/"):
            logged_model = source.removeprefix("models:/").split("/", 1)[0]
            if isinstance(name, str) and name:
                self.resolver.model_gained_version(logged_model, name)
            else:
                self.resolver.model_users.drop(logged_model)
        return []

    async def _version_deleted(self, success: Success) -> list[str]:
        self.resolver.model_users.clear()
        return []

    async def _skill_created(self, success: Success) -> list[str]:
        """The creator of a skill (CreateSkill, or a registration that created it) owns it: the
        skills judged as creations (they did not exist, and `create` on them was checked)."""
        changed: list[str] = []
        for identity in success.new_skills:
            changed += await self._own(success, f"skill:{identity}")
            self.resolver.skill_names.put(identity, identity)
        return changed

    async def _skill_deleted(self, success: Success) -> list[str]:
        self.resolver.skill_names.clear()
        changed: list[str] = []
        for identity in sorted(set(success.stored_skills.values())):
            removed = await self.enforcer.replace_object(
                f"skill:{identity}", None, success.principal.subject
            )
            changed.append(f"removed {removed} rule(s) on skill:{identity}")
        return changed

    async def _dataset_changed(self, success: Success) -> list[str]:
        if dataset_id := success.first("dataset_id"):
            self.resolver.forget_dataset(dataset_id)
        return []
