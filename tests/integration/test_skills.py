"""MLflow 3.18's skill registry through the gateway, against a real MLflow 3.18.0: a team's skills
are its own (read, edit, versions, tags, aliases, deletion), creators own what they create,
protected aliases need alias:<name>, searches show only readable skills, and an organization's
skills are objects of their own (`skill:@org/name`)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.helpers import Gateway, MlflowServer, RedisServer, start_gateway
from tests.integration.test_authn import basic, request

REFUSED = "X-Gateway-Refused"
SKILLS = "/api/3.0/mlflow/skills"
POLICY = """
p, group:team-a, skill:team-a-*, create
p, group:team-b, skill:team-b-*, create
p, group:team-a, skill:@team-a/*, create
# team B may edit team A's shared skill, and nothing else of team A's
p, group:team-b, skill:team-a-shared, edit
# nobody in team A names the production version, not even of a skill they own
p, group:team-a, skill:*, alias:production, deny
# the release manager reads every skill and alone names the production version
p, group:release, skill:*, read
p, group:release, skill:*, alias:production
"""
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-123", "rita": "rita-password-12"}
# A remote source: MLflow records it and its digest, it fetches nothing.
SOURCE = {"source": "https://example.com/skills.zip", "source_type": "zip", "digest": "ab" * 32}
# Bulk registration takes Git sources only.
GIT = {
    "source": "https://example.com/skills.git",
    "source_type": "git",
    "ref": "0123456789abcdef0123456789abcdef01234567",
    "digest": "cd" * 32,
}


@pytest.fixture(scope="module")
def gw(
    newest_mlflow_server: MlflowServer,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("gw-skills")
    gateway = start_gateway(newest_mlflow_server.url, redis_server.db_url(11), data)
    gateway.add_user("alice", PASSWORDS["alice"], "team-a")
    gateway.add_user("bob", PASSWORDS["bob"], "team-b")
    gateway.add_user("rita", PASSWORDS["rita"], "release")
    (data / "policy.csv").write_text(POLICY)
    gateway.cli("policy", "import", str(data / "policy.csv"))
    yield gateway
    gateway.stop()


def call(
    gw: Gateway, user: str, method: str, path: str, payload: Any = None
) -> tuple[int, dict[str, str], Any]:
    headers = basic(user, PASSWORDS[user])
    body = None
    if payload is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(payload).encode()
    status, answer_headers, answer = request(gw, path, method, headers, body)
    try:
        parsed = json.loads(answer) if answer else None
    except ValueError:
        parsed = answer
    return status, answer_headers, parsed


def ok(gw: Gateway, user: str, method: str, path: str, payload: Any = None) -> Any:
    status, headers, body = call(gw, user, method, path, payload)
    assert status == 200 and REFUSED not in headers, (method, path, status, body)
    return body


def refused(gw: Gateway, user: str, method: str, path: str, payload: Any = None) -> None:
    status, headers, body = call(gw, user, method, path, payload)
    assert headers.get(REFUSED) == "authorization", (method, path, status, body)
    assert not 200 <= status < 300


def new_name(team: str) -> str:
    return f"{team}-{secrets.token_hex(3)}"


def create(gw: Gateway, user: str, name: str, organization: str = "") -> str:
    body = {"name": name, **({"organization": organization} if organization else {})}
    assert ok(gw, user, "POST", SKILLS, body)["name"] == name
    return f"@{organization}/{name}" if organization else name


def register(gw: Gateway, user: str, skill: str) -> int:
    version: int = ok(gw, user, "POST", f"{SKILLS}/{skill}/versions", SOURCE)["version"]
    return version


def test_a_team_cannot_read_or_change_another_teams_skill(gw: Gateway) -> None:
    skill = create(gw, "alice", new_name("team-a"))
    version = register(gw, "alice", skill)
    base = f"{SKILLS}/{skill}"
    for method, path, payload in [
        ("GET", base, None),
        ("GET", f"/ajax-api/3.0/mlflow/skills/{skill}", None),
        ("GET", f"{base}/versions", None),
        ("GET", f"{base}/versions/{version}", None),
        ("PATCH", base, {"description": "mine now"}),
        ("POST", f"{base}/tags", {"key": "k", "value": "v"}),
        ("POST", f"{base}/versions", SOURCE),
        ("PATCH", f"{base}/versions/{version}", {"status": "deprecated"}),
        ("POST", f"{base}/versions/{version}/tags", {"key": "k", "value": "v"}),
        ("POST", f"{base}/aliases", {"alias": "candidate", "version": version}),
        ("DELETE", f"{base}/versions/{version}", None),
        ("DELETE", base, None),
    ]:
        refused(gw, "bob", method, path, payload)
    # A name in another team's namespace cannot be created, nor registered into being.
    refused(gw, "bob", "POST", SKILLS, {"name": new_name("team-a")})
    refused(gw, "bob", "POST", f"{SKILLS}/{new_name('team-a')}/versions", SOURCE)
    # Everything above was refused by the gateway: the skill is as alice left it.
    assert ok(gw, "alice", "GET", base)["tags"] == {}
    assert ok(gw, "alice", "GET", f"{base}/versions/{version}")["status"] == "active"


def test_creators_own_what_they_create(gw: Gateway) -> None:
    skill = create(gw, "alice", new_name("team-a"))
    base = f"{SKILLS}/{skill}"
    # Owner: every right on it, deletion included (MLflow creates no version on CreateSkill).
    version = register(gw, "alice", skill)
    ok(gw, "alice", "PATCH", base, {"description": "reviews code"})
    ok(gw, "alice", "POST", f"{base}/tags", {"key": "team", "value": "a"})
    ok(gw, "alice", "POST", f"{base}/aliases", {"alias": "candidate", "version": version})
    assert ok(gw, "alice", "GET", f"{base}/aliases/candidate")["version"] == version
    ok(gw, "alice", "DELETE", f"{base}/aliases/candidate")
    ok(gw, "alice", "PATCH", f"{base}/versions/{version}", {"status": "deprecated"})
    ok(gw, "alice", "DELETE", f"{base}/versions/{version}")
    assert f"skill:{skill}" in gw.cli("policy", "list").stdout
    ok(gw, "alice", "DELETE", base)
    # Its rules went with it: a skill created later under the name inherits nothing.
    assert f"skill:{skill}" not in gw.cli("policy", "list").stdout

    # A registration that creates the skill makes its creator the owner too.
    registered = new_name("team-b")
    register(gw, "bob", registered)
    ok(gw, "bob", "DELETE", f"{SKILLS}/{registered}")


def test_editors_edit_but_only_managers_delete(gw: Gateway) -> None:
    shared = "team-a-shared"
    status, _, _ = call(gw, "alice", "GET", f"{SKILLS}/{shared}")
    if status != 200:
        create(gw, "alice", shared)
    version = register(gw, "alice", shared)
    base = f"{SKILLS}/{shared}"
    ok(gw, "bob", "GET", base)
    ok(gw, "bob", "POST", f"{base}/tags", {"key": "reviewed-by", "value": "b"})
    register(gw, "bob", shared)
    ok(gw, "bob", "PATCH", f"{base}/versions/{version}", {"status": "deprecated"})
    # Status "deleted" deletes the version (and its aliases): manage, like DeleteSkillVersion.
    refused(gw, "bob", "PATCH", f"{base}/versions/{version}", {"status": "deleted"})
    refused(gw, "bob", "DELETE", f"{base}/versions/{version}")
    refused(gw, "bob", "DELETE", base)
    ok(gw, "alice", "PATCH", f"{base}/versions/{version}", {"status": "deleted"})


def test_protected_aliases_need_their_own_right(gw: Gateway) -> None:
    skill = create(gw, "alice", new_name("team-a"))
    version = register(gw, "alice", skill)
    base = f"{SKILLS}/{skill}"
    ok(gw, "alice", "POST", f"{base}/aliases", {"alias": "candidate", "version": version})
    # Protected (GATEWAY_PROTECTED_ALIASES), compared as the backend would: the owner is denied.
    for alias in ("production", "Production"):
        refused(gw, "alice", "POST", f"{base}/aliases", {"alias": alias, "version": version})
    ok(gw, "rita", "POST", f"{base}/aliases", {"alias": "production", "version": version})
    refused(gw, "alice", "DELETE", f"{base}/aliases/production")
    refused(gw, "rita", "DELETE", f"{base}/aliases/candidate")  # read only, and not protected
    ok(gw, "rita", "DELETE", f"{base}/aliases/production")


def _search_all(gw: Gateway, user: str, **query: str) -> list[str]:
    found: list[str] = []
    token: str | None = None
    while True:
        params = {**query, **({"page_token": token} if token else {})}
        page = ok(gw, user, "GET", f"{SKILLS}?{urlencode(params)}")
        found += [
            f"@{s['organization']}/{s['name']}" if s.get("organization") else s["name"]
            for s in page["skills"]
        ]
        token = page.get("next_page_token")
        if not token:
            return found


def test_searches_show_only_readable_skills(gw: Gateway) -> None:
    mine = {create(gw, "alice", new_name("team-a")) for _ in range(3)}
    theirs = {create(gw, "bob", new_name("team-b")) for _ in range(2)}
    org = create(gw, "alice", new_name("planner"), organization="team-a")
    for user, ajax in (("alice", False), ("bob", True)):
        path = "/ajax-api/3.0/mlflow/skills" if ajax else SKILLS
        listed = [s["name"] for s in ok(gw, user, "GET", path)["skills"]]
        assert listed, user
    alice = _search_all(gw, "alice", max_results="1")
    bob = _search_all(gw, "bob", max_results="2")
    assert mine | {org} <= set(alice) and not theirs & set(alice)
    assert theirs <= set(bob) and not (mine | {org}) & set(bob)
    assert len(alice) == len(set(alice))  # paging repeats nothing
    assert all(s.startswith(("team-a-", "@team-a/")) for s in alice)
    assert all(s.startswith("team-b-") or s == "team-a-shared" for s in bob)
    # Naming a skill one may not read selects nothing more.
    chosen = [{"include_skill_identities": s} for s in sorted(mine)[:1]]
    assert _search_all(gw, "bob", **chosen[0]) == []
    # The release manager reads every skill.
    assert mine | theirs | {org} <= set(_search_all(gw, "rita", max_results="50"))


def test_organization_skills_are_objects_of_their_own(gw: Gateway) -> None:
    name = new_name("planner")
    skill = create(gw, "alice", name, organization="team-a")
    base = f"{SKILLS}/{skill}"
    version = register(gw, "alice", skill)
    assert ok(gw, "alice", "GET", base)["organization"] == "team-a"
    assert f"skill:@team-a/{name}" in gw.cli("policy", "list").stdout
    refused(gw, "bob", "GET", base)
    refused(gw, "bob", "GET", f"{base}/versions/{version}")
    refused(gw, "bob", "POST", f"{base}/tags", {"key": "k", "value": "v"})
    refused(gw, "bob", "POST", SKILLS, {"name": new_name("x"), "organization": "team-a"})
    bulk = {"organization": "team-a", "skills": [{"name": new_name("x"), **GIT}]}
    refused(gw, "bob", "POST", f"{SKILLS}/bulk-register", bulk)
    # `@team-a/versions` is the organization's skill `versions`, as MLflow routes it, not the
    # versions of a skill named '@team-a'.
    status, headers, _ = call(gw, "bob", "GET", f"{SKILLS}/@team-a/versions")
    assert headers.get(REFUSED) == "authorization" and status == 404
    # A plain skill of the same name is another object.
    refused(gw, "alice", "POST", SKILLS, {"name": name})


def test_bulk_registration_is_judged_skill_by_skill(gw: Gateway) -> None:
    theirs = create(gw, "bob", new_name("team-b"))
    fresh = new_name("team-a")
    mixed = {"skills": [{"name": fresh, **GIT}, {"name": theirs, **GIT}]}
    refused(gw, "alice", "POST", f"{SKILLS}/bulk-register", mixed)
    refused(gw, "alice", "GET", f"{SKILLS}/{fresh}")  # the refused batch created nothing
    own = {"skills": [{"name": fresh, **GIT}]}
    answer = ok(gw, "alice", "POST", f"{SKILLS}/bulk-register", own)
    assert [v["name"] for v in answer["skill_versions"]] == [fresh]
    ok(gw, "alice", "DELETE", f"{SKILLS}/{fresh}")  # the registration made her the owner


def test_a_skill_upload_streams_to_mlflow_whatever_its_size(gw: Gateway) -> None:
    """A version's archive is not judged: it streams to MLflow, whose own upload limit (not the
    gateway's bound on the bodies it reads) answers a large one."""
    skill = create(gw, "alice", new_name("team-a"))
    boundary = "gateway-test-boundary"
    archive = secrets.token_bytes(34 * 1024**2)  # past the gateway's 32 MiB bound on read bodies
    metadata = json.dumps({"source_type": "zip"}).encode()
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'.encode(),
            b"Content-Type: application/json\r\n\r\n" + metadata + b"\r\n",
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '.encode(),
            b'filename="skill.zip"\r\nContent-Type: application/zip\r\n\r\n' + archive + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
    )
    headers = {
        **basic("alice", PASSWORDS["alice"]),
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    status, answer_headers, answer = request(
        gw, f"{SKILLS}/{skill}/versions", "POST", headers, body, timeout=60
    )
    assert REFUSED not in answer_headers, (status, answer[:300])
    assert status == 413 and b"exceeds the maximum allowed size" in answer, (status, answer[:300])
