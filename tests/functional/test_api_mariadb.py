"""The API's handlers and db layer on MariaDB, in process: what SQLite cannot
show (collations, concurrent writers on one unique index)."""

import ipaddress
import json
import threading

import sqlalchemy as sa
import testtools
import webob

from clouddisco import exceptions
from clouddisco.api import app as api_app
from tests.functional import dbfixture
from tests.unit import base

NET = ipaddress.IPv4Network("10.250.0.0/24")


class ProjectIdsAreBytesTest(testtools.TestCase):
    """``TENANT-A``, ``tenant-a`` and ``ténant-a`` are three projects."""

    PROJECTS = ("TENANT-A", "tenant-a", "ténant-a")

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(dbfixture.MigratedDatabase()).db

    def test_projects_differing_in_case_or_accent_are_distinct(self):
        mine = {p: self.db.create_router(project_id=p, name=p, ha=False,
                                         external_cidr=NET)["id"]
                for p in self.PROJECTS}
        for project, router_id in mine.items():
            self.assertEqual([router_id],
                             [r["id"] for r in self.db.list_routers(project)], project)
            self.assertEqual(project, self.db.get_router(router_id, project)["project_id"])
            for other in set(self.PROJECTS) - {project}:
                self.assertRaises(exceptions.NotFound, self.db.get_router, router_id, other)
                self.assertRaises(exceptions.NotFound, self.db.begin_router_delete,
                                  router_id, other)
        self.assertEqual(3, len(self.db.list_routers()))

    def test_through_the_api(self):
        conf = base.make_conf(api__external_cidr=str(NET), api__auth_strategy="noauth")
        app = api_app.deploy(conf, db=self.db, scheduler=base.RecordingSchedulerAPI())

        def call(method, path, project, body=None):
            req = webob.Request.blank(path, method=method, headers={
                "X-Project-Id": project, "X-Roles": "member"})
            if body is not None:
                req.body = json.dumps(body).encode()
                req.content_type = "application/json"
            return req.get_response(app)

        mine = {p: call("POST", "/v1/routers", p, {"name": p}).json["router"]["id"]
                for p in self.PROJECTS}
        for project, router_id in mine.items():
            listed = call("GET", "/v1/routers", project).json["routers"]
            self.assertEqual([(router_id, project)],
                             [(r["id"], r["project_id"]) for r in listed])
            for other in set(self.PROJECTS) - {project}:
                self.assertEqual(404, call("GET", f"/v1/routers/{router_id}",
                                           other).status_int)
                self.assertEqual(404, call("DELETE", f"/v1/routers/{router_id}",
                                           other).status_int)
        self.assertEqual({"PENDING"}, {r["status"] for r in self.db.list_routers()})

    def test_ids_compare_byte_for_byte(self):
        router_id = self.db.create_router(project_id="p", name="r", ha=False,
                                          external_cidr=NET)["id"]
        self.assertRaises(exceptions.NotFound, self.db.get_router, router_id.upper())
        self.assertEqual(router_id, self.db.get_router(router_id)["id"])

    def test_foreign_keys_survive_the_collation_change(self):
        fks = sa.inspect(self.db.engine).get_foreign_keys("router_bindings")
        self.assertEqual({("routers", "CASCADE"), ("agents", "CASCADE")},
                         {(fk["referred_table"], fk["options"].get("ondelete")) for fk in fks})


class ConcurrentCreatesTest(testtools.TestCase):
    """Creates released together by a barrier, each on its own thread through
    the API's whole stack, one shared Database as in one clouddisco-api."""

    THREADS = 32

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(dbfixture.MigratedDatabase()).db
        conf = base.make_conf(api__external_cidr=str(NET), api__auth_strategy="noauth")
        self.app = api_app.deploy(conf, db=self.db, scheduler=base.RecordingSchedulerAPI())

    def race(self, body):
        barrier = threading.Barrier(self.THREADS)
        results: list = [None] * self.THREADS

        def create(i):
            req = webob.Request.blank("/v1/routers", method="POST",
                                      headers={"X-Project-Id": f"p{i}", "X-Roles": "member"})
            req.body = json.dumps(dict(body, name=f"r{i}")).encode()
            req.content_type = "application/json"
            barrier.wait(30)
            try:
                resp = req.get_response(self.app)
                results[i] = (resp.status_int, resp.json)
            except BaseException as exc:  # reported by the assertions
                results[i] = (type(exc).__name__, str(exc))

        threads = [threading.Thread(target=create, args=(i,)) for i in range(self.THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return results

    def test_one_requested_address_one_winner(self):
        results = self.race({"external_gateway_ip": "10.250.0.9"})
        codes = sorted(code for code, _ in results)
        self.assertEqual([201] + [409] * (self.THREADS - 1), codes, results)
        self.assertEqual(["10.250.0.9"],
                         [r["external_gateway_ip"] for r in self.db.list_routers()])

    def test_next_free_address_never_500(self):
        results = self.race({})
        self.assertEqual([201] * self.THREADS, [code for code, _ in results], results)
        ips = [body["router"]["external_gateway_ip"] for _, body in results]
        self.assertEqual(self.THREADS, len(set(ips)), ips)
