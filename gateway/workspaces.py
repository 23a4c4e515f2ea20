"""MLflow workspaces are not supported yet: the gateway serves MLflow's default workspace only.

With workspaces on (MLFLOW_ENABLE_WORKSPACES), MLflow files names per workspace, chosen by the
X-MLflow-Workspace header; the gateway's policies and lookups know one namespace. Rather than
let a same-named model in another workspace inherit or grant rights, every request carrying the
header is refused (400), and the gateway says at start, and `doctor` says, when MLflow has
workspaces on. Requests without the header go to the default workspace, where the gateway's
lookups go too.
"""

from __future__ import annotations

import logging

import aiohttp

log = logging.getLogger(__name__)

WORKSPACE_HEADER = "X-MLflow-Workspace"
REFUSAL = (
    "MLflow workspaces are not supported by this gateway: send no X-MLflow-Workspace header "
    "(requests are served in MLflow's default workspace)."
)
ENABLED_UPSTREAM = (
    "MLflow has workspaces enabled (MLFLOW_ENABLE_WORKSPACES): this gateway serves the default "
    "workspace only and refuses every request with an X-MLflow-Workspace header; turn "
    "workspaces off on the MLflow server"
)
SERVER_INFO = "/api/3.0/mlflow/server-info"


async def upstream_workspaces_enabled(
    session: aiohttp.ClientSession, upstream_url: str
) -> bool | None:
    """Whether MLflow says it has workspaces on; None when it cannot be asked."""
    try:
        async with session.get(
            upstream_url.rstrip("/") + SERVER_INFO, timeout=aiohttp.ClientTimeout(total=10)
        ) as response:
            if response.status != 200:
                return None
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return bool(body.get("workspaces_enabled")) if isinstance(body, dict) else None


async def warn_if_enabled(session: aiohttp.ClientSession, upstream_url: str) -> None:
    if await upstream_workspaces_enabled(session, upstream_url):
        log.warning(ENABLED_UPSTREAM)
