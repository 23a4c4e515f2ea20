"""Turns a request's credentials into a Principal, or into a refusal that says why.

Order: an Authorization header (Bearer gateway token │ Bearer IdP JWT │ Basic password │ Basic
with a gateway token as the password) wins over a session cookie; no credentials at all is the
anonymous principal, which later stages refuse unless a policy allows it.

A check that succeeded is remembered (gateway/authn/remembered.py): the same credential again
costs no SQL and no Redis until something about it changes, anywhere.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from gateway.authn.credentials import CredentialRefused, looks_like_jwt
from gateway.authn.lockout import Lockout
from gateway.authn.passwords import PasswordVerifier
from gateway.authn.principal import ANONYMOUS, AuthMethod, Principal
from gateway.authn.remembered import SESSION_RECHECK, AuthChanges, Entry, Remembered
from gateway.authn.sessions import SessionData, SessionStore, session_key
from gateway.io_counts import off_the_request
from gateway.store.tokens import TokenStore, looks_like_gateway_token
from gateway.store.users import UserRecord, UserStore


class BearerValidator(Protocol):
    async def principal(self, token: str) -> Principal: ...


SESSION_COOKIE = "mlgw_session"
SECURE_SESSION_COOKIE = "__Host-mlgw_session"


@dataclass(frozen=True)
class AuthFailure:
    """Why credentials were refused. `reason` is for the audit log; `message` for the caller."""

    reason: str
    message: str
    status: int = 401
    retry_after: int | None = None


@dataclass(frozen=True)
class AuthOutcome:
    principal: Principal
    failure: AuthFailure | None = None
    session_id: str | None = None
    session: SessionData | None = None


_BAD_CREDENTIALS = "Invalid credentials."


def principal_for_user(
    user: UserRecord, method: AuthMethod, extra_groups: tuple[str, ...] = ()
) -> Principal:
    return Principal(
        subject=user.username,
        method=method,
        groups=frozenset(user.groups) | frozenset(extra_groups),
        is_admin=user.is_admin,
    )


@dataclass(eq=False)
class Authenticator:
    users: UserStore
    tokens: TokenStore
    sessions: SessionStore
    lockout: Lockout
    passwords: PasswordVerifier
    # Bearer JWTs issued by the IdP (None: not accepted).
    jwt: BearerValidator | None
    _: KW_ONLY
    local_users: bool
    session_cookie: str
    remembered: Remembered = field(default_factory=Remembered)
    changes: AuthChanges | None = None
    # Token id -> when its last use was recorded (at most once a minute each).
    _token_touched: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    async def end_session(self, session_id: str) -> None:
        """Sign a browser out here and on every replica."""
        await self.sessions.delete(session_id)
        self.remembered.forget(session=session_key(session_id))
        if self.changes is not None:
            await self.changes.announce(session=session_key(session_id))

    async def authenticate(
        self, authorization: str | None, cookie: str | None, client_ip: str
    ) -> AuthOutcome:
        if authorization:
            return await self._header(authorization.strip(), client_ip)
        if cookie:
            return await self._session(cookie)
        return AuthOutcome(ANONYMOUS)

    async def _header(self, authorization: str, client_ip: str) -> AuthOutcome:
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            return await self._bearer(credentials, client_ip)
        if scheme.lower() == "basic" and credentials:
            return await self._basic(credentials, client_ip)
        return _refused(f"unsupported Authorization scheme {scheme!r}", "Use Bearer or Basic.")

    async def _bearer(self, credentials: str, client_ip: str) -> AuthOutcome:
        if looks_like_gateway_token(credentials):
            return await self._token(credentials, client_ip)
        if self.jwt is not None and looks_like_jwt(credentials):
            if wait := await self.lockout.retry_after(None, client_ip):
                return _locked(wait)
            try:
                return AuthOutcome(await self.jwt.principal(credentials))
            except CredentialRefused as exc:
                await self.lockout.record_failure(None, client_ip)
                return _refused(str(exc), "Invalid or expired bearer token.")
        await self.lockout.record_failure(None, client_ip)
        return _refused(
            "bearer credential is neither a gateway token nor an accepted JWT",
            "Invalid or expired bearer token.",
        )

    async def _token(self, secret: str, client_ip: str) -> AuthOutcome:
        key = self.remembered.digest("token", secret)
        if (entry := self.remembered.get(key)) is not None and not self.lockout.suspect(
            None, client_ip
        ):
            self._touch_token(entry)
            return AuthOutcome(entry.principal)
        if wait := await self.lockout.retry_after(None, client_ip):
            return _locked(wait)
        check = await self.tokens.check(secret)
        if check.owner is None or check.token is None:
            await self.lockout.record_failure(None, client_ip)
            return _refused(check.refusal or "token refused", "Invalid, expired or revoked token.")
        user = principal_for_user(check.owner, "token")
        principal = Principal(
            subject=user.subject,
            method="token",
            groups=user.groups,
            is_admin=user.is_admin,
            token_id=check.token.id,
            scope=None if check.token.scope.unrestricted else check.token.scope,
        )
        expires = check.token.expires_at
        self.remembered.put(
            key,
            Entry(
                principal,
                user.subject,
                token_id=check.token.id,
                expires_at=_aware(expires).timestamp() if expires else None,
                checked_at=time.time(),
            ),
        )
        self._token_touched[check.token.id] = time.time()
        return AuthOutcome(principal)

    def _touch_token(self, entry: Entry) -> None:
        """The token's last use, written at most once a minute, never on the request's path."""
        token_id = entry.token_id
        if token_id is None or time.time() - self._token_touched.get(token_id, 0) < 60:
            return
        self._token_touched[token_id] = time.time()
        if len(self._token_touched) > 100_000:
            self._token_touched.clear()
        at = datetime.now(UTC)
        off_the_request(lambda: self.tokens.touch(token_id, at))

    async def _basic(self, credentials: str, client_ip: str) -> AuthOutcome:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return _refused("malformed basic credentials", "Malformed basic credentials.")
        username, sep, password = decoded.partition(":")
        if not sep:
            return _refused("malformed basic credentials", "Malformed basic credentials.")
        if looks_like_gateway_token(password):
            # Tools that only speak basic auth send the token as the password.
            return await self._token(password, client_ip)
        if not self.local_users:
            return _refused("password sign-in is disabled", "Use a token.")
        return await self.password(username, password, client_ip, method="password")

    async def password(
        self, username: str, password: str, client_ip: str, *, method: AuthMethod
    ) -> AuthOutcome:
        """Check a username and password, with lockout. Also used by the login form."""
        key = self.remembered.digest("password", username, password)
        suspect = self.lockout.suspect(username, client_ip)
        if (entry := self.remembered.get(key)) is not None and not suspect:
            return AuthOutcome(_as_method(entry.principal, method))
        if wait := await self.lockout.retry_after(username, client_ip):
            return _locked(wait, f"sign-in of {username!r} while locked out")
        found = await self.users.credentials(username)
        user, password_hash = found if found else (None, None)
        if not await self.passwords.verify(username, password, password_hash) or user is None:
            locked_for = await self.lockout.record_failure(username, client_ip)
            if locked_for:
                return _locked(locked_for, f"wrong password for {username!r}; now locked out")
            return _refused(f"wrong password for {username!r}", _BAD_CREDENTIALS)
        if user.disabled:
            return _refused(f"user {username!r} is disabled", _BAD_CREDENTIALS)
        await self.lockout.record_success(username, client_ip)
        principal = principal_for_user(user, method)
        self.remembered.put(key, Entry(principal, user.username, checked_at=time.time()))
        return AuthOutcome(principal)

    async def _session(self, session_id: str) -> AuthOutcome:
        key = self.remembered.digest("session", session_id)
        entry = self.remembered.get(key)
        now = time.time()
        if (
            entry is not None
            and entry.session is not None
            and now - entry.checked_at < SESSION_RECHECK
            and now - entry.session.created_at <= self.sessions.max_age
        ):
            return AuthOutcome(entry.principal, session_id=session_id, session=entry.session)
        session = await self.sessions.get(session_id)
        if session is None:
            # An expired cookie is not an attack: treat the browser as signed out.
            return AuthOutcome(ANONYMOUS)
        user = await self.users.get(session.subject)
        if user is None or user.disabled:
            await self.sessions.delete(session_id)
            return _refused(
                f"session of disabled or deleted user {session.subject!r}",
                "Your account is disabled.",
            )
        principal = principal_for_user(user, "session", session.idp_groups)
        self.remembered.put(
            key,
            Entry(
                principal,
                user.username,
                session=session,
                session_key=session_key(session_id),
                checked_at=now,
            ),
        )
        return AuthOutcome(principal, session_id=session_id, session=session)


def _as_method(principal: Principal, method: AuthMethod) -> Principal:
    if principal.method == method:
        return principal
    return Principal(principal.subject, method, principal.groups, principal.is_admin)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _refused(reason: str, message: str) -> AuthOutcome:
    return AuthOutcome(ANONYMOUS, AuthFailure(reason, message))


def _locked(seconds: int, reason: str = "client locked out") -> AuthOutcome:
    return AuthOutcome(
        ANONYMOUS,
        AuthFailure(
            reason,
            f"Too many failed attempts. Try again in {seconds} seconds.",
            status=429,
            retry_after=seconds,
        ),
    )
