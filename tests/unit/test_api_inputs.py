"""The API as an OpenStack service's: pages with next links, filters, the
version document, and no 500 for any input a client can send.

In process through deploy()'s whole stack, on SQLite, noauth set explicitly
(the headers X-Project-Id and X-Roles).
"""

import datetime
import json
import urllib.parse

import sqlalchemy as sa
import webob

from clouddisco.api import app as api_app
from clouddisco.db import models
from tests.unit import base

ADMIN = {"X-Project-Id": "p1", "X-Roles": "admin"}
MEMBER = {"X-Project-Id": "p2", "X-Roles": "member"}
UNKNOWN_UUID = "5d7a0f3e-0000-4000-8000-000000000000"


class _APICase(base.DBTestCase):
    MAX_LIMIT = 1000

    def setUp(self):
        super().setUp()
        self.conf = base.make_conf(api__auth_strategy="noauth",
                                   api__external_cidr="10.250.0.0/24",
                                   api__max_limit=self.MAX_LIMIT)
        self.scheduler = base.RecordingSchedulerAPI()
        self.app = api_app.deploy(self.conf, db=self.db, scheduler=self.scheduler)

    def request(self, method, path, body=None, headers=ADMIN, raw=None,
                content_type="application/json"):
        req = webob.Request.blank(path, method=method, headers=headers)
        if body is not None or raw is not None:
            req.body = raw if raw is not None else json.dumps(body).encode()
            req.content_type = content_type
        resp = req.get_response(self.app)
        if resp.status_int != 204:
            self.assertEqual("application/json", resp.content_type, resp.body[:200])
        return resp

    def assertError(self, resp, status, field=None, contains=""):
        self.assertEqual(status, resp.status_int, resp.text)
        error = resp.json["error"]
        self.assertEqual(status, error["status"])
        self.assertIn(contains, error["message"])
        self.assertTrue(error["request_id"].startswith("req-"))
        if field is not None:
            self.assertEqual(field, error.get("field"))

    def create(self, headers=ADMIN, **body):
        resp = self.request("POST", "/v1/routers", dict({"name": "r"}, **body),
                            headers=headers)
        self.assertEqual(201, resp.status_int, resp.text)
        return resp.json["router"]

    def walk(self, path, key, headers=ADMIN):
        """Every page from ``path`` by its next links: the items, the pages."""
        items, pages = [], 0
        while path is not None:
            resp = self.request("GET", path, headers=headers)
            self.assertEqual(200, resp.status_int, resp.text)
            pages += 1
            items += resp.json[key]
            nexts = [link["href"] for link in resp.json[f"{key}_links"]
                     if link["rel"] == "next"]
            path = None
            if nexts:
                url = urllib.parse.urlsplit(nexts[0])
                self.assertEqual("http://localhost", f"{url.scheme}://{url.netloc}")
                path = f"{url.path}?{url.query}"
            self.assertLess(pages, 50, "next links loop")
        return items, pages


class PaginationTest(_APICase):
    MAX_LIMIT = 4

    def test_routers_page_by_marker_and_next_links(self):
        ids = [self.create(name=f"r{i}")["id"] for i in range(7)]
        first = self.request("GET", "/v1/routers?limit=3").json
        self.assertEqual(ids[:3], [r["id"] for r in first["routers"]])
        [link] = first["routers_links"]
        self.assertEqual("next", link["rel"])
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link["href"]).query)
        self.assertEqual({"limit": ["3"], "marker": [ids[2]]}, query)
        items, pages = self.walk("/v1/routers?limit=3", "routers")
        self.assertEqual(ids, [r["id"] for r in items])
        self.assertEqual(3, pages)
        # A page that is the last one has no next link.
        last = self.request("GET", f"/v1/routers?marker={ids[3]}").json
        self.assertEqual(ids[4:], [r["id"] for r in last["routers"]])
        self.assertEqual([], last["routers_links"])

    def test_limit_above_max_limit_is_clamped(self):
        ids = [self.create(name=f"r{i}")["id"] for i in range(6)]
        resp = self.request("GET", "/v1/routers?limit=1000")
        self.assertEqual(200, resp.status_int)
        self.assertEqual(ids[:4], [r["id"] for r in resp.json["routers"]])
        # Without a limit: max_limit too, and the rest is a next link away.
        items, pages = self.walk("/v1/routers", "routers")
        self.assertEqual((ids, 2), ([r["id"] for r in items], pages))
        self.assertError(self.request("GET", "/v1/routers?limit=0"), 400, "limit")
        self.assertError(self.request("GET", "/v1/routers?limit=-1"), 400, "limit")
        self.assertError(self.request("GET", "/v1/routers?limit=2.5"), 400, "limit")

    def test_bad_markers_are_400(self):
        mine = self.create(headers=MEMBER)["id"]
        theirs = self.create()["id"]
        for marker in (UNKNOWN_UUID, "not-a-uuid", theirs):
            self.assertError(self.request("GET", f"/v1/routers?marker={marker}",
                                          headers=MEMBER), 400, "marker")
        self.assertEqual([], self.request("GET", f"/v1/routers?marker={mine}",
                                          headers=MEMBER).json["routers"])
        for marker in (UNKNOWN_UUID, "x"):
            self.assertError(self.request("GET", f"/v1/agents?marker={marker}"), 400,
                             "marker")
        for marker in ("999", "abc", "-1", "1" * 40, "²"):
            self.assertError(self.request(
                "GET", "/v1/failover-events?marker=" + urllib.parse.quote(marker)), 400,
                "marker")

    def test_member_pages_see_only_their_routers(self):
        mine = [self.create(headers=MEMBER, name=f"m{i}")["id"] for i in range(5)]
        for _ in range(3):
            self.create()
        items, _ = self.walk("/v1/routers?limit=2", "routers", headers=MEMBER)
        self.assertEqual(mine, [r["id"] for r in items])

    def test_agents_pages(self):
        hosts = [f"h{i}" for i in range(6)]
        for host in reversed(hosts):
            self.db.register_agent(host, "p-")
        items, pages = self.walk("/v1/agents?limit=4", "agents")
        self.assertEqual(hosts, [a["host"] for a in items])
        self.assertEqual(2, pages)

    def add_event(self, detected_at, router_id=None, old=None, new=None):
        with self.db.engine.begin() as conn:
            return conn.execute(sa.insert(models.FailoverEvent).values(
                router_id=router_id, old_agent_id=old, new_agent_id=new, cause="test",
                detected_at=detected_at)).inserted_primary_key[0]

    def test_failover_events_pages_and_filters(self):
        a, b, r = (f"5d7a0f3e-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))
        t0 = datetime.datetime(2026, 12, 4, 10, 0, 0)
        ids = [self.add_event(t0 + datetime.timedelta(minutes=i),
                              router_id=r if i % 2 else None,
                              old=a if i < 5 else b, new=b if i == 2 else None)
               for i in range(10)]
        newest_first = list(reversed(ids))
        items, pages = self.walk("/v1/failover-events?limit=3", "failover_events")
        self.assertEqual((newest_first, 4), ([e["id"] for e in items], pages))

        def listed(query):
            return [e["id"] for e in self.walk(f"/v1/failover-events?limit=2&{query}",
                                               "failover_events")[0]]

        self.assertEqual([ids[i] for i in (9, 7, 5, 3, 1)], listed(f"router_id={r}"))
        self.assertEqual([ids[i] for i in (4, 3, 2, 1, 0)], listed(f"agent_id={a}"))
        self.assertEqual([ids[i] for i in (9, 8, 7, 6, 5, 2)], listed(f"agent_id={b}"))
        since = urllib.parse.quote("2026-12-04T10:07:00Z")
        self.assertEqual([ids[i] for i in (9, 8, 7)], listed(f"since={since}"))
        since = urllib.parse.quote("2026-12-04T11:07:00+01:00")
        self.assertEqual([ids[i] for i in (9, 8, 7)], listed(f"since={since}"))
        self.assertEqual([ids[i] for i in (9, 8, 7)], listed("since=2026-12-04T10:07:00"))
        self.assertEqual([ids[i] for i in (9, 7)],
                         listed(f"since=2026-12-04T10:06:00&router_id={r}&agent_id={b}"))
        # The next link keeps the filters.
        page = self.request("GET", f"/v1/failover-events?limit=1&router_id={r}").json
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(
            page["failover_events_links"][0]["href"]).query)
        self.assertEqual({"limit": ["1"], "router_id": [r], "marker": [str(ids[9])]}, query)

    def test_bad_since_is_400(self):
        for value in ("yesterday", "2026-13-01", "1e9", "%ff"):
            self.assertError(self.request("GET", f"/v1/failover-events?since={value}"), 400)


class HostileInputTest(_APICase):
    def test_invalid_utf8_in_the_path_is_json_400(self):
        for path in ("/%ff", "/v1/routers/%ff", "/v1/%c3%28"):
            self.assertError(self.request("GET", path), 400, contains="not valid UTF-8")

    def test_invalid_utf8_in_a_query_value_is_json_400(self):
        for path in ("/v1/routers?limit=%ff", "/v1/routers?marker=%ff",
                     "/v1/failover-events?router_id=%ff", "/v1/agents?%ff=1"):
            self.assertError(self.request("GET", path), 400, contains="not valid UTF-8")

    def test_lone_surrogate_in_a_name_is_400(self):
        resp = self.request("POST", "/v1/routers", raw=b'{"name": "\\ud800"}')
        self.assertError(resp, 400, contains="not valid Unicode")
        self.assertEqual([], self.db.list_routers())
        # A surrogate pair is one character, and fine.
        self.assertEqual("\U0001f600", self.create(name="\U0001f600")["name"])

    def test_deeply_nested_json_is_400(self):
        for depth in (1000, 10000):
            self.assertError(self.request("POST", "/v1/routers",
                                          raw=b"[" * depth + b"]" * depth), 400)
            raw = b'{"name": "r", "ha": ' + b"[" * depth + b"]" * depth + b"}"
            self.assertError(self.request("POST", "/v1/routers", raw=raw), 400)
        # Just under the parser's limit: the schema refuses it, briefly.
        raw = b'{"name": ' + b"[" * 900 + b"]" * 900 + b"}"
        resp = self.request("POST", "/v1/routers", raw=raw)
        self.assertError(resp, 400, field="name")
        self.assertLess(len(resp.body), 1000)
        self.assertEqual([], self.db.list_routers())

    def test_project_id_longer_than_the_column_is_400(self):
        long_id = {"X-Project-Id": "p" * (models.PROJECT_ID_LENGTH + 1), "X-Roles": "member"}
        self.assertError(self.request("POST", "/v1/routers", {"name": "r"}, headers=long_id),
                         400, contains="project id")
        self.assertError(self.request("GET", "/v1/routers", headers=long_id), 400,
                         contains="project id")
        self.assertEqual([], self.db.list_routers())
        longest = {"X-Project-Id": "p" * models.PROJECT_ID_LENGTH, "X-Roles": "member"}
        self.assertEqual("p" * 64, self.create(headers=longest)["project_id"])

    def test_media_types_are_case_insensitive(self):
        for content_type in ("Application/JSON", "APPLICATION/JSON",
                             "application/json; charset=UTF-8"):
            resp = self.request("POST", "/v1/routers", {"name": "r"},
                                content_type=content_type)
            self.assertEqual(201, resp.status_int, resp.text)
        self.assertError(self.request("POST", "/v1/routers", {"name": "r"},
                                      content_type="text/json"), 415)

    def test_odd_digits_in_an_event_id_are_404(self):
        for raw in ("%C2%B2", "%D9%A3", "1%C2%B2", "-1", "1e3", "9" * 19):
            self.assertError(self.request("GET", f"/v1/failover-events/{raw}"), 404)

    def test_garbage_bodies_are_400(self):
        for raw in (b"\xff\xfe\x00", b'{"name": "r"', b"", b"nul", b'{"name": "\\x"}',
                    b'{"name": NaN}', b"1" * 5000):
            resp = self.request("POST", "/v1/routers", raw=raw)
            self.assertError(resp, 400)
            self.assertLess(len(resp.body), 1000)


class VersionDocumentTest(_APICase):
    def test_root_lists_versions(self):
        resp = self.request("GET", "/", headers={})
        self.assertEqual(200, resp.status_int)
        [version] = resp.json["versions"]
        self.assertEqual("v1.0", version["id"])
        self.assertEqual("CURRENT", version["status"])
        self.assertEqual(("", ""), (version["min_version"], version["max_version"]))
        self.assertEqual({"rel": "self", "href": "http://localhost/v1/"},
                         version["links"][0])

    def test_v1_describes_itself(self):
        for path in ("/v1", "/v1/"):
            resp = self.request("GET", path, headers={})
            self.assertEqual(200, resp.status_int)
            version = resp.json["version"]
            self.assertEqual(("v1.0", "CURRENT"), (version["id"], version["status"]))
            self.assertEqual(self.request("GET", "/", headers={}).json["versions"][0],
                             version)


class ServerOptionsTest(base.DBTestCase):
    """clouddisco-api's waitress limits come from [api]."""

    def test_defaults_outlast_waitress_defaults(self):
        from clouddisco.cmd import api as cmd_api
        conf = base.make_conf()
        options = cmd_api.server_options(conf)
        # waitress's connection_limit of 100 let 100 idle clients stall it.
        self.assertGreaterEqual(options["connection_limit"], 1000)
        self.assertTrue(options["asyncore_use_poll"])
        # The API's own (JSON) 413 comes first.
        self.assertGreater(options["max_request_body_size"],
                           conf.oslo_middleware.max_request_body_size)
        import waitress.adjustments
        waitress.adjustments.Adjustments(**options)  # every key is waitress's

    def test_options_are_passed_through(self):
        from clouddisco.cmd import api as cmd_api
        conf = base.make_conf(api__connection_limit=7, api__channel_timeout=9,
                              api__backlog=11, api__max_request_body_size=13,
                              api__max_request_header_size=4096, api__threads=3)
        options = cmd_api.server_options(conf)
        self.assertEqual((7, 9, 11, 13, 4096, 3), tuple(options[k] for k in (
            "connection_limit", "channel_timeout", "backlog", "max_request_body_size",
            "max_request_header_size", "threads")))

    def test_fd_limit_is_raised_for_the_connections(self):
        import resource

        from clouddisco.cmd import api as cmd_api
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        cmd_api.raise_fd_limit(1000)
        self.assertEqual(min(1128, hard) if hard != resource.RLIM_INFINITY else 1128,
                         resource.getrlimit(resource.RLIMIT_NOFILE)[0])


class KeystoneProjectIdTest(base.DBTestCase):
    """A token whose project id is longer than the column: 400, not 500."""

    def test_long_project_in_a_token_is_400(self):
        import uuid

        from keystonemiddleware import fixture as ksm_fixture
        tokens = self.useFixture(ksm_fixture.AuthTokenFixture())
        conf = base.make_conf(api__auth_strategy="keystone",
                              keystone_authtoken__www_authenticate_uri="http://ks.test/v3")
        app = api_app.deploy(conf, db=self.db, scheduler=base.RecordingSchedulerAPI())

        def post(project_id):
            token = uuid.uuid4().hex
            tokens.add_token_data(token_id=token, user_id="u", project_id=project_id,
                                  role_list=["member"])
            req = webob.Request.blank("/v1/routers", method="POST",
                                      headers={"X-Auth-Token": token})
            req.body = b'{"name": "r"}'
            req.content_type = "application/json"
            return req.get_response(app)

        resp = post("k" * (models.PROJECT_ID_LENGTH + 1))
        self.assertEqual(400, resp.status_int, resp.text)
        self.assertIn("project id", resp.json["error"]["message"])
        self.assertEqual(201, post("k" * models.PROJECT_ID_LENGTH).status_int)


class ConflictingWritesTest(_APICase):
    def test_deadlock_after_the_retries_is_503_not_500(self):
        from oslo_db import exception as db_exc

        def lose(**kw):
            raise db_exc.DBDeadlock()

        self.db.create_router = lose
        resp = self.request("POST", "/v1/routers", {"name": "r"})
        self.assertError(resp, 503, contains="concurrent")
        self.assertEqual("1", resp.headers["Retry-After"])
