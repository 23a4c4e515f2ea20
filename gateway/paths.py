"""The gateway's own URL space and the headers it names: one place for every module.

Everything the gateway serves itself lives under one reserved prefix that no MLflow route starts
with (a test proves it against the installed MLflow); everything else belongs to MLflow.
"""

from __future__ import annotations

PREFIX = "/.gateway/"

# Probes: answered for anyone, never audited (they change nothing and reveal nothing).
HEALTHZ = PREFIX + "healthz"
READYZ = PREFIX + "readyz"
METRICS = PREFIX + "metrics"
PROBES = frozenset({HEALTHZ, READYZ, METRICS})

# Signing in and out (gateway/authn/pages.py, oidc.py).
LOGIN = PREFIX + "login"
LOGIN_SSO = PREFIX + "login/sso"
CALLBACK = PREFIX + "callback"
LOGOUT = PREFIX + "logout"

# Pages and the JSON API (gateway/admin/).
TOKENS = PREFIX + "tokens"
ADMIN = PREFIX + "admin/"
STATIC = PREFIX + "static/"
API = PREFIX + "api/"
OPENAPI = API + "openapi.json"

REQUEST_ID_HEADER = "X-Request-Id"
# Says who refused: the gateway, not MLflow ("target", "authentication", "authorization").
REFUSED_HEADER = "X-Gateway-Refused"
