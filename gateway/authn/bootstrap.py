"""The first admin, created at start from GATEWAY_ADMIN_USERNAME and GATEWAY_ADMIN_PASSWORD."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from gateway.authn.passwords import hash_password
from gateway.store.users import StoreError, UserStore

log = logging.getLogger(__name__)

GENERATED_PASSWORD_FILE = "admin-password"  # noqa: S105 - a file name


def generated_admin_password(data_dir: Path) -> tuple[str, bool]:
    """The dev stack's admin password: read from the data dir, or made and stored there (0600).

    Returns the password and whether it was just made (and so should be shown once).
    """
    path = data_dir / GENERATED_PASSWORD_FILE
    if path.is_file():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(18)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password, True


async def ensure_bootstrap_admin(users: UserStore, username: str, password: str | None) -> bool:
    """Create the admin if it does not exist yet. An existing account is never changed."""
    if password is None or await users.get(username) is not None:
        return False
    try:
        await users.add(username, hash_password(password), is_admin=True)
    except (StoreError, IntegrityError):
        # Replicas starting together: another one created it between our look and our insert.
        if await users.get(username) is None:
            raise
        return False
    log.info("bootstrap admin %r created", username)
    return True
