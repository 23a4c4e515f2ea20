"""What the gateway's decisions are about: resources (their policy object names) and the names
MLflow gives them — experiments, registered models, skills, objects in no experiment, artifact
paths — and MLflow's own message for each when it does not exist. Pure functions; no lookups
(those are resolve.py's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.authz.canonical import Ambiguous


@dataclass(frozen=True)
class Resource:
    """A governing resource: its policy object names (id first, then name aliases)."""

    names: tuple[str, ...]
    label: str

    @property
    def kind(self) -> str:
        return self.names[0].split(":", 1)[0]


ORPHAN_PREFIX = "orphan:"


def orphan_resource(kind: str, object_id: str) -> Resource:
    """An object MLflow places in no experiment (a dataset removed from all of them, a trace kept
    elsewhere): nobody's experiment rule covers it, only admins and explicit `orphan:` grants."""
    return Resource(
        (f"{ORPHAN_PREFIX}{kind}:{object_id}",), f"{kind} {object_id!r} (in no experiment)"
    )


# What MLflow answers when the object a request names does not exist, by the kind of what the
# request names (the forms of MLflow 3.17's own messages). The gateway gives the same answer for
# an object that exists but that the caller holds no right on: they cannot be told apart.
MISSING_MESSAGES: dict[str, str] = {
    "experiment": "No Experiment with id={} exists",
    "experiment_by_name": "Could not find experiment with name '{}'",
    "run": "Run with id={} not found",
    "trace": "Trace with ID '{}' not found.",
    "existing_trace": "Trace with ID '{}' not found.",
    "logged_model": "Logged model with ID '{}' not found.",
    "dataset": "Evaluation dataset with id '{}' not found",
    "registered_model": "Registered Model with name={} not found",
    "prompt_uri": "Prompt '{}' not found",
    "artifact": "No such artifact: '{}'",
    "model_source": "No such model source: '{}'",
    "lookup:issue": "Issue with ID '{}' not found",
    "lookup:label_schema": "Label schema with id '{}' not found.",
    "lookup:review_queue": "Review queue with id '{}' not found.",
    "lookup:prompt_job": "Job with ID {} not found",
    "lookup:scorer": "Scorer with id '{}' not found",
}


def missing_message(kind: str, value: str) -> str | None:
    """MLflow's message for a missing object of this kind; None for kinds that name no object
    MLflow looks up (names for creation, fixed policy objects)."""
    if kind == "skill":
        organization, name = split_skill(value)
        return f"Skill '{name}' not found in organization '{organization}'"
    template = MISSING_MESSAGES.get(kind)
    return template.format(value) if template else None


# -- skills (MLflow 3.18's skill registry) --------------------------------------------------------
# A skill is named by its organization and its name; its policy object is `skill:<name>`, or
# `skill:@<organization>/<name>` for an organization's skill. MLflow's names cannot start with
# '@' nor hold '/', so the two forms never meet; the gateway refuses what would break them.
SKILL_PREFIX = "skill:"
# Where MLflow keeps the content uploaded for a skill version: skills/[@<org>/]<name>/<token>/…
SKILL_ARTIFACT_ROOT = "skills"


def skill_identity(organization: str, name: str) -> str:
    """``name``, or ``@organization/name``; Ambiguous for what no policy object could name."""
    if not name or name.startswith("@") or any(c in name for c in "/*,") or name != name.strip():
        raise Ambiguous(f"invalid skill name {name!r}")
    if organization and (
        any(c in organization for c in "/*,@") or organization != organization.strip()
    ):
        raise Ambiguous(f"invalid skill organization {organization!r}")
    return f"@{organization}/{name}" if organization else name


def split_skill(identity: str) -> tuple[str, str]:
    """(organization, name) of ``name`` or ``@organization/name``."""
    if identity.startswith("@") and "/" in identity:
        organization, _, name = identity[1:].partition("/")
        return organization, name
    return "", identity


def skill_resource(identity: str) -> Resource:
    return Resource((SKILL_PREFIX + identity,), f"skill {identity!r}")


def skill_of_artifact(parts: list[str]) -> str | None:
    """The skill whose uploaded content an artifact path (split, canonical) is inside, or None
    for `skills` and `skills/@<org>` themselves (every skill's, or an organization's)."""
    rest = parts[1:]
    organization = ""
    if rest and rest[0].startswith("@"):
        organization, rest = rest[0][1:], rest[1:]
        if not organization:
            raise Ambiguous("invalid skill artifact path")
    if not rest:
        return None
    return skill_identity(organization, rest[0])


def experiment_resource(experiment_id: str, name: str | None) -> Resource:
    names = (f"experiment:{experiment_id}",) + ((f"experiment_name:{name}",) if name else ())
    return Resource(names, f"experiment {experiment_id}")


def model_resource(name: str) -> Resource:
    return Resource((f"registered_model:{name}",), f"registered model {name!r}")


def canonical_artifact_path(raw: str) -> list[str]:
    """Decode like MLflow's path validation (until stable) and split; refuse traversal."""
    path = raw
    for _ in range(10):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        raise Ambiguous("the artifact path is encoded too many times")
    if "\\" in path or "\x00" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise Ambiguous("invalid artifact path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Ambiguous("artifact paths must not contain '..'")
    return parts
