"""The real clouddisco-api (waitress) on a throw-away MariaDB database: what
reaches the API and what the server answers itself, idle connections, and
the database or the broker going away.

Each test starts its own clouddisco-api with ``[api] auth_strategy =
noauth``; the database and the broker are reached through TcpProxy links the
tests cut.
"""

import contextlib
import json
import os
import socket
import time

import fixtures
import requests
import testtools

from lab import cloud as lab_cloud
from lab import netlab
from lab import tcpproxy
from tests.functional import dbfixture

HEADERS = {"X-Project-Id": "functional", "X-Roles": "admin"}
# Small limits, so the tests can cross them cheaply; the API's own
# ([oslo_middleware]) body limit is below the server's, as the help says.
BODY_LIMIT = 64 * 1024
APP_BODY_LIMIT = 32 * 1024  # a 10,000-deep JSON array is 20 KiB
HEADER_LIMIT = 8 * 1024


class ApiServer(fixtures.Fixture):
    """clouddisco-api on a free port, its database and broker behind proxies."""

    def __init__(self, **api_options) -> None:
        super().__init__()
        self.api_options = api_options

    def _setUp(self) -> None:
        tmp = self.useFixture(fixtures.TempDir()).path
        database = self.useFixture(dbfixture.MigratedDatabase())
        self.db = database.db
        tempdb = database.tempdb
        self.db_proxy = tcpproxy.TcpProxy(tempdb.host, tempdb.port).start()
        self.addCleanup(self.db_proxy.close)
        db_url = tempdb.url.replace(f"@{tempdb.host}:{tempdb.port}/",
                                    f"@127.0.0.1:{self.db_proxy.port}/")
        self.broker_proxy = tcpproxy.TcpProxy("127.0.0.1", 5672).start()
        self.addCleanup(self.broker_proxy.close)
        self.port = netlab.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"bind_host": "127.0.0.1", "bind_port": self.port,
                   "auth_strategy": "noauth", "external_cidr": "10.250.0.0/24",
                   "max_request_body_size": BODY_LIMIT,
                   "max_request_header_size": HEADER_LIMIT, **self.api_options}
        config = os.path.join(tmp, "api.conf")
        with open(config, "w") as f:
            f.write(f"""[DEFAULT]
transport_url = rabbit://guest:guest@127.0.0.1:{self.broker_proxy.port}/
[database]
connection = {db_url}
connection_parameters = connect_timeout=3&read_timeout=3&write_timeout=3
[oslo_middleware]
max_request_body_size = {APP_BODY_LIMIT}
[api]
""" + "".join(f"{k} = {v}\n" for k, v in options.items()))
        self.log_path = os.path.join(tmp, "api.log")
        self.process = lab_cloud.Process("api", [f"{lab_cloud.BIN}/clouddisco-api",
                                                 "--config-file", config],
                                         self.log_path).start()
        self.addCleanup(self.process.stop)
        self.addCleanup(self._attach_log)
        netlab.wait_for(self._up, 60, 0.2, "clouddisco-api to answer")

    def _attach_log(self) -> None:
        with open(self.log_path, "rb") as f:
            self.log = f.read()

    def _up(self) -> bool:
        if not self.process.alive():
            raise AssertionError("clouddisco-api exited: " + open(self.log_path).read()[-3000:])
        try:
            return requests.get(self.url + "/", timeout=2).ok
        except requests.RequestException:
            return False

    def raw(self, data: bytes, timeout: float = 5) -> tuple[int, str, bytes]:
        """Send ``data`` as is; the status, Content-Type and body of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            out = b""
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                while chunk := sock.recv(65536):
                    out += chunk
        head, _, body = out.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        ctype = next((h.split(":", 1)[1].strip() for h in lines[1:]
                      if h.lower().startswith("content-type:")), "")
        return int(lines[0].split()[1]), ctype, body


def request(method: bytes, path: bytes, headers: bytes = b"", body: bytes = b"") -> bytes:
    return (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"X-Project-Id: functional\r\nX-Roles: admin\r\n" + headers + b"\r\n" + body)


def json_post(body: bytes, extra: bytes = b"") -> bytes:
    return request(b"POST", b"/v1/routers", b"Content-Type: application/json\r\n"
                   b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra, body)


class ServerAnswersTest(testtools.TestCase):
    """Which bad requests reach the API (JSON answers) and which the server
    answers itself (plain text, documented in doc/source/api-ref.rst)."""

    def setUp(self):
        super().setUp()
        self.server = self.useFixture(ApiServer())

    def assertJSON(self, answer, status):
        code, ctype, body = answer
        self.assertEqual((status, "application/json"), (code, ctype.split(";")[0]), body)
        self.assertEqual(status, json.loads(body)["error"]["status"])

    def assertServers(self, answer, status):
        code, ctype, body = answer
        self.assertEqual((status, "text/plain"), (code, ctype.split(";")[0]), body)
        # waitress's signature, with the server's ident.
        self.assertIn(b"(generated by clouddisco-api)", body)

    def test_what_reaches_the_api_is_json(self):
        raw = self.server.raw
        self.assertJSON(raw(request(b"GET", b"/%ff")), 400)
        self.assertJSON(raw(request(b"GET", b"/v1/routers?limit=%ff")), 400)
        self.assertJSON(raw(request(b"FOO", b"/v1/routers")), 405)
        self.assertJSON(raw(request(b"GET", b"/v1/nope")), 404)
        self.assertJSON(raw(json_post(b"[" * 10000 + b"]" * 10000)), 400)
        self.assertJSON(raw(json_post(b'{"name": "\\ud800"}')), 400)
        # Above the API's body limit, below the server's: the API's 413.
        self.assertJSON(raw(json_post(b'{"name": "' + b"x" * (APP_BODY_LIMIT + 10) +
                                      b'"}')), 413)
        code, ctype, body = raw(json_post(b'{"name": "r"}').replace(
            b"application/json", b"Application/JSON"))
        self.assertEqual(201, code, body)

    def test_what_the_server_answers_itself_is_plain_text(self):
        raw = self.server.raw
        self.assertServers(raw(json_post(b"x" * (BODY_LIMIT + 1))), 413)
        self.assertServers(raw(request(b"GET", b"/", b"X-Big: " + b"a" * HEADER_LIMIT +
                                       b"\r\n")), 431)
        self.assertServers(raw(request(b"get", b"/v1/routers")), 400)
        for length in (b"abc", b"-1", b"+5", b"5\r\nContent-Length: 6"):
            self.assertServers(raw(request(b"POST", b"/v1/routers",
                                           b"Content-Type: application/json\r\n"
                                           b"Content-Length: " + length + b"\r\n",
                                           b"hello!")), 400)
        self.assertServers(raw(request(b"GET", b"/\xff")), 400)
        self.assertServers(raw(request(b"POST", b"/v1/routers",
                                       b"Transfer-Encoding: gzip\r\n")), 501)
        # The API still answers.
        self.assertEqual(200, requests.get(self.server.url + "/v1/routers",
                                           headers=HEADERS, timeout=5).status_code)


class IdleConnectionsTest(testtools.TestCase):
    IDLE = 110

    def test_idle_connections_do_not_stall_the_server(self):
        server = self.useFixture(ApiServer())
        idle = []
        self.addCleanup(lambda: [s.close() for s in idle])
        for _ in range(self.IDLE):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        time.sleep(0.5)  # waitress has accepted them all
        started = time.monotonic()
        resp = requests.get(server.url + "/v1/routers", headers=HEADERS, timeout=10)
        self.assertEqual(200, resp.status_code)
        self.assertLess(time.monotonic() - started, 5)

    def test_idle_connections_are_closed_after_channel_timeout(self):
        server = self.useFixture(ApiServer(channel_timeout=2))
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        self.addCleanup(sock.close)
        started = time.monotonic()
        self.assertEqual(b"", sock.recv(10))  # closed by the server
        self.assertLess(time.monotonic() - started, 10)


class LostDependenciesTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.server = self.useFixture(ApiServer())

    def call(self, method, path, **kw):
        return requests.request(method, self.server.url + path, headers=HEADERS,
                                timeout=20, **kw)

    def assert503(self, resp):
        self.assertEqual(503, resp.status_code, resp.text)
        self.assertEqual("application/json", resp.headers["Content-Type"].split(";")[0])
        self.assertGreater(int(resp.headers["Retry-After"]), 0)
        self.assertIn("database is unavailable", resp.json()["error"]["message"])

    def test_database_down_is_503_with_retry_after(self):
        router = self.call("POST", "/v1/routers", json={"name": "r"}).json()["router"]
        for mode in ("reset", "drop"):
            self.server.db_proxy.cut(mode)
            for method, path, body in (("GET", "/v1/routers", None),
                                       ("GET", f"/v1/routers/{router['id']}", None),
                                       ("POST", "/v1/routers", {"name": "r2"}),
                                       ("GET", "/v1/agents", None)):
                self.assert503(self.call(method, path, json=body))
            self.server.db_proxy.restore()
            netlab.wait_for(lambda: self.call("GET", "/v1/routers").status_code == 200,
                            30, 0.5, "the API to answer again")
        # Nothing was created during the outages.
        self.assertEqual([router["id"]],
                         [r["id"] for r in self.call("GET", "/v1/routers").json()["routers"]])

    def test_broker_down_create_is_accepted_pending(self):
        """The router is stored before the cast to the scheduler, which goes
        on a background thread: a create answers 201 PENDING at once, and the
        scheduler's health monitor places routers left unbound."""
        for mode in ("reset", "drop"):
            self.server.broker_proxy.cut(mode)
            started = time.monotonic()
            resp = self.call("POST", "/v1/routers", json={"name": mode})
            self.assertEqual(201, resp.status_code, resp.text)
            self.assertEqual("PENDING", resp.json()["router"]["status"])
            self.assertLess(time.monotonic() - started, 3)
            router_id = resp.json()["router"]["id"]
            self.assertEqual(200, self.call("GET", f"/v1/routers/{router_id}").status_code)
            started = time.monotonic()
            self.assertEqual(204, self.call("DELETE", f"/v1/routers/{router_id}").status_code)
            self.assertLess(time.monotonic() - started, 3)
            self.server.broker_proxy.restore()
