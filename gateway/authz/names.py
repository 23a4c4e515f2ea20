"""Names a new experiment or registered model may not have.

MLflow's URLs and URIs give some characters a meaning of their own: `#` ends a URL (a client
drops what follows), `?` starts a query, `/` separates `models:/<name>/<version>`, and control
characters are read differently by different readers. A name carrying one could later be named
in a request that the gateway and MLflow read as two different objects, so new names are refused
(creation and rename); existing objects are unaffected.
"""

from __future__ import annotations

import re
import unicodedata

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Refused in every new name; registered models also refuse what MLflow itself refuses ('/', ':')
# and '*' (the owner rule would name it, and '*' in a rule's object is a wildcard).
_SPECIAL = ("#", "?")
_MODEL_SPECIAL = ("/", ":", "*")


def new_name_refusal(kind: str, name: str) -> str | None:
    """Why ``name`` cannot be a new ``kind`` ('experiment', 'registered_model' or 'skill': its
    identity, `name` or `@org/name`), or None."""
    what = {"experiment": "experiment", "skill": "skill"}.get(kind, "registered model")
    if _CONTROL.search(name):
        return f"{what} names must not contain control characters"
    if kind == "skill":
        # The owner rule names `skill:<identity>`: '*' would make it a pattern; one '/' parts
        # the organization from the name (checked when the identity was read).
        name = name.split("/", 1)[1] if name.startswith("@") else name
        if "*" in name or "/" in name:
            return "skill names must not contain '*' or '/'"
    special = _SPECIAL + (_MODEL_SPECIAL if kind == "registered_model" else ())
    found = sorted({c for c in special if c in name})
    if found:
        shown = " or ".join(repr(c) for c in found)
        return f"{what} names must not contain {shown} (they have a meaning in MLflow's URLs)"
    return None


def collation_key(name: str) -> str:
    """What MySQL/MariaDB's default collations compare (utf8mb4_general_ci, *_unicode_ci):
    letter case, accents and trailing spaces ignored. Used where the gateway matches a name
    against a short fixed list (protected aliases), so that a spelling the backend would take
    for a protected name is protected too; SQLite and PostgreSQL compare exactly, where this only
    protects more."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.casefold().rstrip(" ")
