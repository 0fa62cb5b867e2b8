"""Shared set-up for unit tests: SQLite, in-memory config, recording RPC clients."""

import datetime
import os
import tempfile

import jsonschema
import sqlalchemy as sa
import testtools

from clouddisco import conf as cd_conf
from clouddisco import rpc
from clouddisco.db import api as db_api
from clouddisco.db import models


def make_conf(**overrides):
    """A fresh ConfigOpts; overrides are ``group__option=value`` or ``option=value``.

    The API trusts the identity headers (``[api] auth_strategy = noauth``)
    unless ``api__auth_strategy`` says otherwise.
    """
    conf = cd_conf.build([], default_config_files=[])
    overrides.setdefault("api__auth_strategy", "noauth")
    for key, value in overrides.items():
        group, _, name = key.rpartition("__")
        conf.set_override(name, value, group or None)
    return conf


class RecordingAgentAPI:
    """Stands in for rpc.AgentAPI: records what would be cast to which host."""

    def __init__(self):
        self.added: list[tuple[str, list[str]]] = []
        self.removed: list[tuple[str, list[str]]] = []
        self.generations: list[tuple[str, int]] = []  # (host, lease generation) per cast

    def routers_added(self, host, routers, lease_generation):
        # What the real client would put on the wire must pass the agent's check.
        views = [dict(rpc.agent_router_view(r), lease_generation=lease_generation)
                 for r in routers]
        jsonschema.validate({"routers": views}, rpc.SCHEMAS["routers_added"])
        self.added.append((host, [r["id"] for r in routers]))
        self.generations.append((host, lease_generation))

    def routers_removed(self, host, router_ids, lease_generation):
        jsonschema.validate({"router_ids": list(router_ids),
                             "lease_generation": lease_generation},
                            rpc.SCHEMAS["routers_removed"])
        self.removed.append((host, list(router_ids)))
        self.generations.append((host, lease_generation))

    def added_to(self, host):
        return [rid for h, ids in self.added if h == host for rid in ids]


class RecordingSchedulerAPI:
    def __init__(self):
        self.scheduled: list[str] = []
        self.deleted: list[str] = []

    def schedule_router(self, router_id):
        self.scheduled.append(router_id)

    def delete_router(self, router_id):
        self.deleted.append(router_id)


class DBTestCase(testtools.TestCase):
    """A test with its own SQLite database, built from the models."""

    def setUp(self):
        super().setUp()
        fd, path = tempfile.mkstemp(suffix=".sqlite", prefix="clouddisco-unit-")
        os.close(fd)
        self.addCleanup(os.unlink, path)
        self.db = db_api.Database(f"sqlite:///{path}")
        self.db.create_schema()
        self.addCleanup(self.db.engine.dispose)

    def make_router(self, name="r", project_id="p1", cidr="10.250.0.0/16"):
        import ipaddress
        return self.db.create_router(project_id=project_id, name=name, ha=False,
                                     external_cidr=ipaddress.IPv4Network(cidr))

    def age_heartbeat(self, host, seconds):
        """Pretend the agent on ``host`` last reported ``seconds`` ago."""
        when = self.db.now() - datetime.timedelta(seconds=seconds)
        with self.db.engine.begin() as conn:
            conn.execute(sa.update(models.Agent).where(models.Agent.host == host)
                         .values(heartbeat_at=when))

    def age_routers(self, seconds):
        when = self.db.now() - datetime.timedelta(seconds=seconds)
        with self.db.engine.begin() as conn:
            conn.execute(sa.update(models.Router).values(updated_at=when))
