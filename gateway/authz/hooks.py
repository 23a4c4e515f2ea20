"""Bookkeeping after MLflow said yes: owners of new things, policies that follow a rename.

The creator of an experiment or registered model becomes its owner (`manage`). Renaming a
registered model moves the rules on its old name to the new one; deleting it removes them, so a new
model with the old name inherits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gateway.authn.principal import Principal
from gateway.authz.canonical import Params
from gateway.authz.enforcer import Enforcer
from gateway.authz.policy import Rule
from gateway.authz.resolve import Resolver

log = logging.getLogger(__name__)


# Creations whose answer names the new object's experiment (remembered: no lookup later):
# hook -> (field of the answer, resolver kind, field of its info holding the new id).
CREATED = {
    "run_created": ("run", "run", "run_id"),
    "logged_model_created": ("model", "logged_model", "model_id"),
}


def _first(params: Params, name: str) -> str | None:
    values = params.values(name)
    return values[0] if values else None


class Hooks:
    def __init__(self, enforcer: Enforcer, resolver: Resolver) -> None:
        self.enforcer = enforcer
        self.resolver = resolver

    async def after_success(
        self,
        hook: str,
        principal: Principal,
        params: Params,
        response: dict[str, Any],
        stored_names: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Run ``hook``; returns what changed, for the audit log. ``stored_names`` maps the
        registered model names the request sent to the names MLflow stores them under."""
        owner = f"user:{principal.subject}"
        stored = stored_names or {}
        if hook == "experiment_created":
            experiment_id = response.get("experiment_id")
            if experiment_id is None:
                return []
            self.resolver.remember_experiment(str(experiment_id), _first(params, "name") or "")
            rule = Rule(owner, f"experiment:{experiment_id}", "manage")
            await self.enforcer.add([rule], actor=principal.subject)
            return [f"added '{rule}'"]
        if hook == "model_created":
            name = (response.get("registered_model") or {}).get("name")
            if not name:
                return []
            self.resolver.remember_model(name)
            rule = Rule(owner, f"registered_model:{name}", "manage")
            await self.enforcer.add([rule], actor=principal.subject)
            return [f"added '{rule}'"]
        if hook == "model_renamed":
            sent = _first(params, "name") or ""
            old = stored.get(sent, sent)
            new = (response.get("registered_model") or {}).get("name") or _first(params, "new_name")
            if not old or not new:
                return []
            self.resolver.model_names.clear()
            self.resolver.remember_model(new)
            moved = await self.enforcer.replace_object(
                f"registered_model:{old}", f"registered_model:{new}", principal.subject
            )
            return [f"moved {moved} rule(s) from registered_model:{old} to registered_model:{new}"]
        if hook in CREATED:
            field, kind, id_field = CREATED[hook]
            info = (response.get(field) or {}).get("info") or {}
            object_id, experiment_id = info.get(id_field), info.get("experiment_id")
            if isinstance(object_id, str) and experiment_id is not None:
                self.resolver.remember_owner(kind, object_id, str(experiment_id))
            return []
        if hook == "trace_started":
            trace_ids = params.values("trace.trace_info.trace_id")
            for trace_id in trace_ids:
                self.resolver.owner_of.drop(f"trace:{trace_id}")
            return []
        if hook == "version_created":
            # Readers of the model may now load the logged model it was made from.
            source = _first(params, "source") or ""
            name = (response.get("model_version") or {}).get("name")
            if source.startswith("models:/"):
                logged_model = source.removeprefix("models:/").split("/", 1)[0]
                if isinstance(name, str) and name:
                    self.resolver.model_gained_version(logged_model, name)
                else:
                    self.resolver.model_users.drop(logged_model)
            return []
        if hook == "version_deleted":
            self.resolver.model_users.clear()
            return []
        if hook == "model_deleted":
            self.resolver.model_users.clear()
            self.resolver.model_names.clear()
            sent = _first(params, "name") or ""
            name = stored.get(sent, sent)
            if not name:
                return []
            removed = await self.enforcer.replace_object(
                f"registered_model:{name}", None, principal.subject
            )
            return [f"removed {removed} rule(s) on registered_model:{name}"]
        if hook == "experiment_renamed":
            experiment_id = _first(params, "experiment_id")
            if experiment_id:
                self.resolver.forget_experiment(experiment_id)
            return []
        if hook == "dataset_changed":
            dataset_id = _first(params, "dataset_id")
            if dataset_id:
                self.resolver.forget_dataset(dataset_id)
            return []
        log.error("unknown hook %s", hook)
        return []
