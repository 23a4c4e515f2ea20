from alembic.config import Config
from alembic.script import ScriptDirectory

from gateway.store.migrate import HEAD_REVISION, MIGRATIONS


def test_head_revision_constant_matches_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION
