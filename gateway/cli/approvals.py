"""`mlflow-gateway approvals`: list, approve and reject held promotions, as yourself.

Unlike the other commands, these call a running gateway's API with your own credentials, the
ones the mlflow client uses (MLFLOW_TRACKING_URI with MLFLOW_TRACKING_TOKEN, or
MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD): an approval is a person's decision, and
the gateway both checks who may make it and makes the approved request to MLflow.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Any

import click

from gateway.approvals.store import STATUSES

API = "/.gateway/api/approvals"


def _credentials() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    raise click.ClickException(
        "no credentials: set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD, as for the mlflow client"
    )


def _call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    headers = {**_credentials(), "Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if not url.startswith(("http://", "https://")):
        raise click.ClickException(f"{url!r} is not an http(s) URL of a gateway")
    target = url.rstrip("/") + path
    request = urllib.request.Request(target, data, headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc).get("message", exc.reason)
        except ValueError:
            message = exc.reason
        raise click.ClickException(f"{exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"cannot reach the gateway at {url}: {exc}") from None


def _line(a: dict[str, Any]) -> str:
    decided = f" by {a['decided_by']}" if a.get("decided_by") else ""
    note = f" — {a['error']}" if a.get("error") else ""
    comment = f" ({a['comment']})" if a.get("comment") else ""
    return (
        f"{a['id']}  {a['status']:<9} {a['request']}  asked by {a['requested_by']} "
        f"at {a['requested_at']}{decided}{comment}{note}"
    )


url_option = click.option(
    "--url",
    envvar="MLFLOW_TRACKING_URI",
    required=True,
    help="The gateway's URL (default: MLFLOW_TRACKING_URI).",
)


@click.group()
def approvals() -> None:
    """Promotions that need a second person: list, approve, reject."""


@approvals.command("list")
@url_option
@click.option("--status", type=click.Choice(STATUSES), help="Only approvals in this status.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def list_approvals(url: str, status: str | None, as_json: bool) -> None:
    """Your requests, those you may decide or decided (admins: all), newest first."""
    answer = _call(url, "GET", API + (f"?status={status}" if status else ""))
    for approval in answer["approvals"]:
        click.echo(json.dumps(approval, sort_keys=True) if as_json else _line(approval))


def _decision_command(verb: str, done: str, help_text: str) -> None:
    """`approvals approve` and `approvals reject`: one command but for the decision."""

    @approvals.command(verb, help=help_text)
    @url_option
    @click.argument("approval_id")
    @click.option("--comment", help="Why, for the requester and the audit trail.")
    def decide(url: str, approval_id: str, comment: str | None) -> None:
        body = {"comment": comment} if comment else {}
        approval = _call(url, "POST", f"{API}/{approval_id}/{verb}", body)["approval"]
        click.echo(f"{done}: {approval['request']} (asked by {approval['requested_by']})")
        if approval.get("error"):
            click.echo(f"note: {approval['error']}", err=True)


_decision_command(
    "approve", "approved", "Approve APPROVAL_ID: the gateway makes the held request to MLflow."
)
_decision_command("reject", "rejected", "Reject APPROVAL_ID: the held request is never made.")
