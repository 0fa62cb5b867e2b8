"""clouddisco-db-manage: ``upgrade [REVISION]``, ``current``, ``head``."""

from oslo_config import cfg

from clouddisco import launch
from clouddisco.db import api as db_api
from clouddisco.db import migration

PROG = "clouddisco-db-manage"


def _add_commands(subparsers) -> None:
    upgrade = subparsers.add_parser("upgrade", help="migrate the schema")
    upgrade.add_argument("revision", nargs="?", default="head")
    subparsers.add_parser("current", help="print the schema revision of the database")
    subparsers.add_parser("head", help="print the newest revision this code knows")


def main() -> None:
    command = cfg.SubCommandOpt("command", title="commands", handler=_add_commands)
    conf = launch.prepare(PROG, groups=["DEFAULT", "database"], cli_opts=[command])
    db = db_api.Database.from_conf(conf)
    name = conf.command.name
    if name == "head":
        print(migration.head())
        return
    launch.require(PROG, "the database ([database] connection)", db.ping)
    if name == "current":
        print(migration.current(db) or "(empty)")
    elif name == "upgrade":
        migration.upgrade(db, conf.command.revision)
        print(f"database at revision {migration.current(db)}")
