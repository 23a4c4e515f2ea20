"""create_app(settings): wiring only — middlewares, routes, startup and cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import aiohttp_jinja2
import jinja2
import redis.asyncio as aioredis
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import paths
from gateway.admin.api import AdminApi
from gateway.admin.approvals_api import ApprovalsApi
from gateway.admin.audit_api import AuditApi
from gateway.admin.endpoints import add_routes
from gateway.admin.openapi import openapi_handler
from gateway.admin.service import AdminService, TokenService
from gateway.admin.tokens_page import TokensPage
from gateway.admin.ui import Console
from gateway.approvals.gate import ApprovalGate
from gateway.approvals.mlflow_calls import MlflowCalls
from gateway.approvals.service import ApprovalService
from gateway.approvals.store import ApprovalStore
from gateway.audit.record import audit_middleware, security_event
from gateway.audit.writer import AuditWriter, new_instance_id
from gateway.authn.authenticator import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    Authenticator,
    BearerValidator,
)
from gateway.authn.bootstrap import ensure_bootstrap_admin
from gateway.authn.csrf import origin_of
from gateway.authn.lockout import Lockout, LockoutPolicy
from gateway.authn.middleware import authn_middleware
from gateway.authn.pages import CALLBACK_PATH, AuthPages, CookiePolicy
from gateway.authn.passwords import PasswordVerifier
from gateway.authn.remembered import AuthChanges, AuthListener, Remembered
from gateway.authn.sessions import SessionStore
from gateway.authz.authorize import Authorizer
from gateway.authz.casbin_model import load_model
from gateway.authz.enforcer import Enforcer
from gateway.authz.filters import SearchFilter
from gateway.authz.hooks import Hooks
from gateway.authz.owners import OwnerRules
from gateway.authz.resolve import Resolver
from gateway.authz.routes import RouteTable
from gateway.config import Settings
from gateway.edge import edge_middleware, target_guard_middleware
from gateway.errors import NOT_FOUND, mlflow_error
from gateway.observability import (
    Metrics,
    Observability,
    ReadinessCheck,
    http_check,
    metrics_middleware,
)
from gateway.page_headers import page_headers_middleware
from gateway.pipeline import MlflowPipeline
from gateway.policy_lines import parse_lines
from gateway.proxy import MlflowProxy
from gateway.store.auth_version import current as current_auth_version
from gateway.store.db import create_engine, ping
from gateway.store.migrate import upgrade_database_in_child
from gateway.store.policies import PolicyStore
from gateway.store.tokens import TokenStore
from gateway.store.users import UserStore
from gateway.workspaces import warn_if_enabled

if TYPE_CHECKING:
    from gateway.authn.oidc import OidcClient

STATIC_DIR = Path(__file__).with_name("static")
SHIPPED_POLICY = Path(__file__).with_name("policy_files") / "bootstrap.csv"

# What the app holds. Connections and stores:
SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", aioredis.Redis)
PUBSUB_REDIS = web.AppKey("pubsub_redis", aioredis.Redis)
DATABASE = web.AppKey("database", AsyncEngine)
USERS = web.AppKey("users", UserStore)
TOKENS = web.AppKey("tokens", TokenStore)
IDP_HTTP = web.AppKey("idp_http", aiohttp.ClientSession)
# The request's stages:
PROXY = web.AppKey("proxy", MlflowProxy)
ENFORCER = web.AppKey("enforcer", Enforcer)
AUTHORIZER = web.AppKey("authorizer", Authorizer)
SEARCH = web.AppKey("search_filter", SearchFilter)
HOOKS = web.AppKey("hooks", Hooks)
APPROVALS = web.AppKey("approvals", ApprovalService)
# What runs beside the requests:
OWNER_RULES = web.AppKey("owner_rules", OwnerRules)
AUDIT = web.AppKey("audit", AuditWriter)
METRICS = web.AppKey("metrics", Metrics)
AUTH_LISTENER = web.AppKey("auth_listener", AuthListener)


def _jwt_validator(app: web.Application, settings: Settings) -> BearerValidator | None:
    if not settings.jwt_audience:
        return None
    # Imported only when configured: the JOSE stack costs memory every gateway would pay.
    from gateway.authn.jwks import Discovery, JwksCache
    from gateway.authn.jwt_bearer import JwtSettings, JwtValidator

    issuer = (settings.jwt_issuer or settings.oidc_issuer or "").rstrip("/")
    jwks_url = settings.jwt_jwks_url
    if jwks_url:

        async def configured_jwks_url() -> str:
            return str(jwks_url)

        keys = JwksCache(lambda: app[IDP_HTTP], configured_jwks_url)
    else:
        discovery = Discovery(lambda: app[IDP_HTTP], issuer)
        keys = JwksCache(lambda: app[IDP_HTTP], lambda: discovery.endpoint("jwks_uri"))
    return JwtValidator(
        JwtSettings(
            issuer=issuer,
            audience=settings.jwt_audience,
            algorithms=settings.jwt_algorithms,
            subject_claim=settings.jwt_subject_claim,
            groups_claim=settings.jwt_groups_claim,
            leeway=settings.jwt_leeway,
        ),
        keys,
    )


def _oidc_client(
    app: web.Application, settings: Settings, redis: aioredis.Redis
) -> OidcClient | None:
    if not settings.oidc_issuer:
        return None
    from gateway.authn.jwks import Discovery, JwksCache
    from gateway.authn.oidc import OidcClient, OidcSettings

    discovery = Discovery(lambda: app[IDP_HTTP], settings.oidc_issuer)
    keys = JwksCache(lambda: app[IDP_HTTP], lambda: discovery.endpoint("jwks_uri"))
    oidc_settings = OidcSettings(
        issuer=settings.oidc_issuer,
        client_id=settings.oidc_client_id or "",
        client_secret=settings.oidc_client_secret or "",
        redirect_uri=settings.effective_public_url + CALLBACK_PATH,
        scopes=settings.oidc_scopes,
        username_claim=settings.oidc_username_claim,
        groups_claim=settings.oidc_groups_claim,
        allowed_email_domains=settings.oidc_allowed_email_domains,
        required_groups=settings.oidc_required_groups,
        leeway=settings.jwt_leeway,
    )
    return OidcClient(oidc_settings, discovery, keys, lambda: app[IDP_HTTP], redis)


def create_app(settings: Settings) -> web.Application:
    if not settings.upstream_url:
        raise ValueError("settings.upstream_url is required")
    metrics = Metrics.create()
    redis = aioredis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )
    engine = create_engine(settings.effective_database_url)
    users, tokens = UserStore(engine), TokenStore(engine)
    app = web.Application(
        # Bodies are streamed, never read whole by the gateway; this only bounds what aiohttp itself
        # buffers for the gateway's own forms.
        client_max_size=1024**2,
        # Long request lines: MLflow search filters, and every admin query the schema allows.
        handler_args={
            "max_field_size": 16 * 1024,
            "max_line_size": 64 * 1024,
            # Bodies arrive as the client encoded them: the gateway judges what MLflow will
            # decode (all of it) and streams the rest unchanged.
            "auto_decompress": False,
        },
    )
    auth_changes = AuthChanges(redis)

    async def announce_failure(username: str | None, ip: str) -> None:
        await auth_changes.announce(failure=(username, ip), wait=False)

    lockout = Lockout(
        redis,
        LockoutPolicy(
            user_threshold=settings.lockout_user_threshold,
            ip_threshold=settings.lockout_ip_threshold,
            base_lock=settings.lockout_seconds,
        ),
        announce_failure,
    )
    remembered = Remembered()
    authenticator = Authenticator(
        users,
        tokens,
        SessionStore(redis, settings.session_idle_timeout, settings.session_max_age),
        lockout,
        PasswordVerifier(),
        _jwt_validator(app, settings),
        local_users=settings.local_users,
        session_cookie=SECURE_SESSION_COOKIE if settings.secure_cookies else SESSION_COOKIE,
        remembered=remembered,
        changes=auth_changes,
    )
    app[AUTH_LISTENER] = AuthListener(
        settings.redis_url, remembered, lambda: current_auth_version(engine), lockout.hint
    )
    oidc = _oidc_client(app, settings, redis)
    public_origin = origin_of(settings.effective_public_url)
    idp_origins = (origin_of(settings.oidc_issuer),) if settings.oidc_issuer else ()
    audit = AuditWriter(
        redis,
        settings.data_dir / "audit-spool",
        new_instance_id(),
        maxlen=settings.audit_maxlen,
        spool_max_bytes=settings.audit_spool_max_bytes,
    )
    metrics.watch_audit(audit)
    app.middlewares.extend(
        [
            edge_middleware(settings.trusted_proxies),
            *([audit_middleware(audit, settings.audit_required)] if settings.audit_enabled else []),
            target_guard_middleware(),
            metrics_middleware(metrics),
            page_headers_middleware(idp_origins),
            authn_middleware(authenticator, public_origin),
        ]
    )
    app[SETTINGS] = settings
    app[AUDIT] = audit
    app[METRICS] = metrics
    app[REDIS] = redis
    app[DATABASE] = engine
    app[USERS] = users
    app[TOKENS] = tokens
    app[PROXY] = MlflowProxy(
        settings.upstream_url,
        keepalive=settings.upstream_keepalive,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
    )
    # A connection of its own for the policy channel: it waits on messages with no read timeout.
    app[PUBSUB_REDIS] = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    # The casbin model picks the decision path (checked with the settings: it loads).
    app[ENFORCER] = Enforcer(
        PolicyStore(engine), app[PUBSUB_REDIS], model=load_model(settings.casbin_model)
    )
    resolver = Resolver(
        lambda: app[PROXY].session,
        settings.upstream_url,
        on_lookup=lambda kind: metrics.lookups.labels(kind).inc(),
    )
    # Renames and deletions on any replica arrive as policy changes: names may mean another model.
    app[ENFORCER].on_change.append(resolver.policy_changed)
    required = frozenset(settings.approval_required)
    app[AUTHORIZER] = Authorizer(
        RouteTable(), app[ENFORCER], resolver, frozenset(settings.protected_aliases), required
    )
    # Held promotions: in the shared Redis, made at MLflow over the proxy's own client.
    approval_calls = MlflowCalls(lambda: app[PROXY].session, settings.upstream_url)
    app[APPROVALS] = ApprovalService(
        ApprovalStore(redis), app[ENFORCER], approval_calls, audit, settings.approval_ttl
    )
    app[SEARCH] = SearchFilter(lambda: app[PROXY].session, settings.upstream_url, app[ENFORCER])
    # Creators' owner rules: decided on at once, journalled, stored in batches after the answer.
    app[OWNER_RULES] = OwnerRules(app[ENFORCER], settings.data_dir, auth_changes)
    app[AUTH_LISTENER].on_grant = app[OWNER_RULES].foreign_grant
    app[HOOKS] = Hooks(app[ENFORCER], resolver, app[OWNER_RULES])
    app.cleanup_ctx.append(_lifecycle)
    templates = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("gateway", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    # For the page header's "Console" link; a function, so proxied requests never pay for it.
    templates.globals["is_admin"] = app[ENFORCER].is_admin

    observability = Observability(
        metrics,
        checks={
            "mlflow": http_check(lambda: app[PROXY].session, f"{settings.upstream_url}/health"),
            "redis": _redis_check(app),
            "database": _database_check(app),
            "audit": _audit_check(app),
        },
    )
    pages = AuthPages(
        authenticator,
        oidc,
        CookiePolicy(
            authenticator.session_cookie, settings.secure_cookies, settings.session_max_age
        ),
        settings.effective_public_url,
        settings.local_users,
        settings.oidc_display_name,
        audit,
    )
    app.router.add_get(paths.HEALTHZ, observability.healthz)
    app.router.add_get(paths.READYZ, observability.readyz)
    app.router.add_get(paths.METRICS, observability.metrics_page)
    app.router.add_routes(pages.routes())
    tokens_page = TokensPage(
        TokenService(tokens, audit, auth_changes=auth_changes),
        pages.page,
        settings.effective_public_url,
    )
    app.router.add_routes(tokens_page.routes())
    admin_api = AdminApi(
        AdminService(users, tokens, app[ENFORCER], audit, auth_changes=auth_changes), resolver
    )
    endpoints = [
        *admin_api.endpoints(),
        *AuditApi(redis).endpoints(),
        *ApprovalsApi(app[APPROVALS]).endpoints(),
    ]
    app.router.add_get(
        paths.OPENAPI,
        openapi_handler(endpoints, settings.effective_public_url, authenticator.session_cookie),
    )
    add_routes(app, endpoints, app[ENFORCER])
    console = Console(admin_api, redis, settings.effective_public_url, app[APPROVALS])
    app.router.add_routes(console.routes())
    app.router.add_static(paths.STATIC, STATIC_DIR)
    app.router.add_route("*", paths.PREFIX + "{tail:.*}", _gateway_not_found)
    gate = ApprovalGate(required, app[APPROVALS], approval_calls) if required else None
    pipeline = MlflowPipeline(app[AUTHORIZER], app[PROXY], app[SEARCH], app[HOOKS], gate)
    app.router.add_route("*", "/{tail:.*}", pipeline.handle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    await upgrade_database_in_child(app[DATABASE], settings.effective_database_url)
    await ensure_bootstrap_admin(app[USERS], settings.admin_username, settings.admin_password)
    policy_file = settings.policy_file or SHIPPED_POLICY
    await app[ENFORCER].store.bootstrap(parse_lines(policy_file.read_text()))
    # Owner rules a process journalled but did not store before it died.
    await app[OWNER_RULES].recover()
    await app[ENFORCER].load()
    # Which decision path GATEWAY_CASBIN_MODEL chose, and an uncached decision timed on it.
    app[ENFORCER].log_path()
    app[ENFORCER].start()
    app[OWNER_RULES].start()
    app[AUTH_LISTENER].start()
    app[AUDIT].start()
    security_event(app[AUDIT], "gateway_started", subject="gateway", settings=settings.redacted())
    app[IDP_HTTP] = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    await app[PROXY].start()
    # Said once at start, without waiting for MLflow (it may still be starting).
    workspace_check = asyncio.create_task(
        warn_if_enabled(app[PROXY].session, settings.upstream_url or "")
    )
    yield
    workspace_check.cancel()
    security_event(app[AUDIT], "gateway_stopped", subject="gateway")
    await app[OWNER_RULES].stop()
    await app[AUDIT].stop()
    await app[ENFORCER].stop()
    await app[AUTH_LISTENER].stop()
    await app[PUBSUB_REDIS].aclose()
    await app[PROXY].close()
    await app[IDP_HTTP].close()
    await app[REDIS].aclose()
    await app[DATABASE].dispose()


async def _gateway_not_found(request: web.Request) -> web.Response:
    return mlflow_error(NOT_FOUND, f"No gateway endpoint at {request.path}")


def _redis_check(app: web.Application) -> ReadinessCheck:
    async def check() -> None:
        await app[REDIS].ping()
        return None

    return check


def _database_check(app: web.Application) -> ReadinessCheck:
    async def check() -> None:
        await ping(app[DATABASE])
        return None

    return check


def _audit_check(app: web.Application) -> ReadinessCheck:
    async def check() -> str:
        writer = app[AUDIT]
        spooled = writer.state.spooled_bytes
        if not writer.can_store:
            raise RuntimeError(f"spool full ({spooled} bytes) and Redis unreachable")
        if spooled:
            warning = " — WARNING: near its bound" if writer.spool_near_bound else ""
            return f"spooling to disk ({spooled} bytes of {writer.spool_max_bytes}){warning}"
        return f"stream ok ({writer.state.written} events written, {writer.backlog} queued)"

    return check
