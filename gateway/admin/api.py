"""The admin JSON API under /.gateway/api/: the caller's own profile and tokens, users and groups,
policy, everyone's tokens — an area a module, each operation described once, as an `Endpoint`, for
both routing and OpenAPI (the audit trail's are in `audit_api`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.admin.endpoints import Endpoint
from gateway.admin.me_api import MeApi
from gateway.admin.policy_api import PolicyApi
from gateway.admin.tokens_api import TokensApi
from gateway.admin.users_api import UsersApi

if TYPE_CHECKING:
    from gateway.admin.service import AdminService
    from gateway.authz.enforcer import Enforcer
    from gateway.authz.resolve import Resolver


class AdminApi:
    def __init__(self, service: AdminService[Enforcer], resolver: Resolver) -> None:
        self.service = service
        self.resolver = resolver
        self.policy = PolicyApi(service, resolver)
        self._areas = (MeApi(service), UsersApi(service), self.policy, TokensApi(service))

    async def names_of(self, object_: str) -> tuple[str, ...]:
        """Every policy name of the resource, as the gateway judges requests."""
        return await self.policy.names_of(object_)

    def endpoints(self) -> list[Endpoint]:
        return [endpoint for area in self._areas for endpoint in area.endpoints()]
