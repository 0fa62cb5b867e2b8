"""A real Keystone on loopback, for the tests and the quick start.

``Keystone`` is a fixture: in a temporary directory it writes keystone.conf
(SQLite, fernet tokens, credential keys), then one child process runs
``keystone-manage`` db_sync, fernet_setup, credential_setup and bootstrap
(admin user and project, RegionOne, the identity endpoint) and serves
keystone's WSGI application (``keystone.server.flask.core``, the code behind
keystone/wsgi/api.py) with waitress on a free loopback port. Importing
keystone takes most of the start-up time (5-7 s on the CI machine), so both
happen in that one process: about 10 s in all. It is stopped by its pid on
cleanup, also when the set-up fails half way.

Once it answers, the fixture creates over Keystone's REST API:

- projects ``demo`` and ``alt_demo``, each with a user of the same name
  that has the ``member`` role there (``reader`` is implied, as Keystone's
  bootstrap makes member imply reader);
- project ``service`` and the ``clouddisco`` service user (role
  ``service``), which the API's auth_token uses to validate tokens;
- the catalog service ``clouddisco`` of type ``l3-ha`` (the type names what
  it does, as Octavia registers ``load-balancer``); ``register_endpoint(url)``
  gives it a public endpoint.

Share one per test class (``setUpClass`` / a class fixture): tests only add
resources to it.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import signal
import subprocess
import sys
import time

import fixtures
import requests

SERVICE_TYPE = "l3-ha"
SERVICE_NAME = "clouddisco"
REGION = "RegionOne"
DOMAIN = "Default"
USERS = ("admin", "demo", "alt_demo")

CONF_TEMPLATE = """\
[DEFAULT]
use_stderr = true
debug = {debug}
[database]
connection = sqlite:///{tmp}/keystone.db
[token]
provider = fernet
expiration = {expiration}
[fernet_tokens]
key_repository = {tmp}/fernet-keys
[fernet_receipts]
key_repository = {tmp}/fernet-keys
[credential]
key_repository = {tmp}/credential-keys
[identity]
# bcrypt's cost: every password authentication pays it (default 12: ~0.3 s).
password_hash_rounds = 4
[cache]
# Token validation, role assignments and the catalog from memory, not from
# SQLite on every request.
enabled = true
backend = dogpile.cache.memory
"""


def _serve(config_file: str, port_file: str, admin_password: str, url_base: str) -> None:
    """The child process: keystone-manage's steps, then the WSGI server.

    The port is chosen by the kernel (bind to 0) and written to
    ``port_file`` once the socket listens, so that no other process can take
    it between choice and bind.
    """
    started = time.monotonic()
    import keystone.conf
    import waitress
    from keystone.cmd import cli
    from oslo_config import cfg

    def mark(what: str) -> None:
        print(f"lab.keystone: {what} at {time.monotonic() - started:.2f}s", flush=True)

    mark("imported")

    argv = ["keystone-manage", "--config-file", config_file]
    owner = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    server = waitress.create_server(lambda e, s: [], host="127.0.0.1", port=0, threads=8,
                                    ident="keystone-lab")
    port = server.effective_port
    url = url_base.format(port=port)
    for step in (["db_sync"], ["fernet_setup", *owner], ["credential_setup", *owner],
                 ["bootstrap", "--bootstrap-password", admin_password,
                  "--bootstrap-public-url", url, "--bootstrap-internal-url", url,
                  "--bootstrap-region-id", REGION]):
        keystone.conf.CONF.clear()
        cli.main([*argv, *step])
        mark(step[0])
    keystone.conf.CONF.clear()
    # keystone-manage's sub-command is no option of the server.
    with contextlib.suppress(cfg.Error):
        keystone.conf.CONF.unregister_opt(cli.command_opt)
    from keystone.common import provider_api
    from keystone.server.flask import core
    # bootstrap loaded (and locked) the backends; the application loads its own.
    provider_api.ProviderAPIs._clear_registry_instances()
    # It parses the command line as its own: give it none.
    sys.argv[1:] = []
    server.application = core.initialize_application(name="public",
                                                     config_files=[config_file])
    mark("application initialised")
    with open(port_file + ".new", "w") as f:
        f.write(str(port))
    os.replace(port_file + ".new", port_file)
    server.run()


class Keystone(fixtures.Fixture):
    """A Keystone with the users, projects and catalog entry clouddisco needs.

    ``token_expiration``: seconds a token lives (Keystone's ``[token]
    expiration``). ``url``, ``admin_password``, ``passwords`` (by user),
    ``project_ids`` (by project name), ``user_ids``; ``start_seconds`` is how
    long set-up took.
    """

    def __init__(self, token_expiration: int = 3600, debug: bool = False) -> None:
        super().__init__()
        self.token_expiration = token_expiration
        self.debug = debug

    def _setUp(self) -> None:
        started = time.monotonic()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.config_file = os.path.join(self.tmp, "keystone.conf")
        with open(self.config_file, "w") as f:
            f.write(CONF_TEMPLATE.format(tmp=self.tmp, expiration=self.token_expiration,
                                         debug=self.debug))
        self.log_path = os.path.join(self.tmp, "keystone.log")
        self.admin_password = secrets.token_hex(8)
        self.passwords = {"admin": self.admin_password}
        port_file = os.path.join(self.tmp, "port")
        code = ("import sys; from lab import keystone; "
                "keystone._serve(*sys.argv[1:])")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, self.config_file, port_file,
                 self.admin_password, "http://127.0.0.1:{port}/v3"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env, cwd=self.tmp)
        self.addCleanup(self.stop)
        self.port = self._wait_port(port_file, timeout=120)
        self.url = f"http://127.0.0.1:{self.port}/v3"
        self.session = requests.Session()
        self._admin_token = self.token("admin")
        self.project_ids: dict[str, str] = {}
        self.user_ids: dict[str, str] = {}
        self.role_ids = {r["name"]: r["id"] for r in self._get("/roles")["roles"]}
        self.project_ids["admin"] = self._find("projects", "admin")
        self.user_ids["admin"] = self._find("users", "admin")
        for name in ("demo", "alt_demo"):
            self._project_with_user(name, name, "member")
        self._project_with_user("service", SERVICE_NAME, "service")
        self.service_id = self._post("/services", {"service": {
            "name": SERVICE_NAME, "type": SERVICE_TYPE,
            "description": "clouddisco: highly available virtual routers"}})["service"]["id"]
        self.start_seconds = time.monotonic() - started

    def _wait_port(self, port_file: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"keystone exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            if os.path.exists(port_file):
                with open(port_file) as f:
                    port = int(f.read())
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"http://127.0.0.1:{port}/v3", timeout=5).ok:
                        return port
            time.sleep(0.1)
        raise TimeoutError(f"keystone did not answer within {timeout}s: {self.log_tail()}")

    def log_tail(self, size: int = 4000) -> str:
        with open(self.log_path, "rb") as f:
            return f.read()[-size:].decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s, of the server's pid."""
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    # ------------------------------------------------------------ REST calls

    def _call(self, method: str, path: str, body=None, expect=(200, 201, 204)) -> dict:
        resp = self.session.request(method, self.url + path, json=body, timeout=30,
                                    headers={"X-Auth-Token": self._admin_token})
        if resp.status_code not in expect:
            raise RuntimeError(f"keystone {method} {path}: {resp.status_code} {resp.text}")
        return resp.json() if resp.content else {}

    def _get(self, path: str) -> dict:
        return self._call("GET", path)

    def _post(self, path: str, body: dict) -> dict:
        return self._call("POST", path, body)

    def _find(self, kind: str, name: str) -> str:
        [item] = self._get(f"/{kind}?name={name}")[kind]
        return item["id"]

    def _project_with_user(self, project: str, user: str, role: str) -> None:
        pid = self._post("/projects", {"project": {
            "name": project, "domain_id": DOMAIN.lower()}})["project"]["id"]
        password = secrets.token_hex(8)
        uid = self._post("/users", {"user": {
            "name": user, "password": password, "domain_id": DOMAIN.lower(),
            "default_project_id": pid}})["user"]["id"]
        self._call("PUT", f"/projects/{pid}/users/{uid}/roles/{self.role_ids[role]}")
        self.project_ids[project] = pid
        self.user_ids[user] = uid
        self.passwords[user] = password

    # --------------------------------------------------------------- public

    def register_endpoint(self, url: str) -> str:
        """A public endpoint ``url`` of the clouddisco (``l3-ha``) service in
        RegionOne; returns its id."""
        return self._post("/endpoints", {"endpoint": {
            "service_id": self.service_id, "interface": "public", "url": url,
            "region_id": REGION}})["endpoint"]["id"]

    def delete_endpoint(self, endpoint_id: str) -> None:
        self._call("DELETE", f"/endpoints/{endpoint_id}", expect=(204, 404))

    def default_project(self, user: str) -> str:
        return "service" if user == SERVICE_NAME else user

    def token(self, user: str, project: str | None = None) -> str:
        """A project-scoped token of ``user`` (on its own project by default)."""
        project = project or self.default_project(user)
        resp = requests.post(self.url + "/auth/tokens", timeout=30, json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": DOMAIN},
                "password": self.passwords[user]}}},
            "scope": {"project": {"name": project, "domain": {"name": DOMAIN}}}}})
        if resp.status_code != 201:
            raise RuntimeError(f"keystone token for {user}: {resp.status_code} {resp.text}")
        return resp.headers["X-Subject-Token"]

    def headers(self, user: str) -> dict[str, str]:
        return {"X-Auth-Token": self.token(user)}

    def revoke(self, token: str) -> None:
        """Revoke a token (DELETE /v3/auth/tokens)."""
        resp = requests.delete(self.url + "/auth/tokens", timeout=30, headers={
            "X-Auth-Token": self._admin_token, "X-Subject-Token": token})
        if resp.status_code != 204:
            raise RuntimeError(f"keystone revoke: {resp.status_code} {resp.text}")

    def short_lived_token(self, user: str, seconds: float) -> tuple[str, datetime.datetime]:
        """A real token of ``user`` that expires in about ``seconds``: issued
        for an application credential that expires then (Keystone caps a
        token's expiry at its application credential's). Returns the token
        and its expiry (UTC)."""
        uid = self.user_ids[user]
        with requests.Session() as s:
            own = self.token(user)
            expires = (datetime.datetime.now(datetime.timezone.utc)
                       + datetime.timedelta(seconds=seconds))
            resp = s.post(self.url + f"/users/{uid}/application_credentials", timeout=30,
                          headers={"X-Auth-Token": own}, json={"application_credential": {
                              "name": "short-" + secrets.token_hex(4),
                              "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%f")}})
            if resp.status_code != 201:
                raise RuntimeError(f"keystone application credential: {resp.status_code} "
                                   f"{resp.text}")
            cred = resp.json()["application_credential"]
            resp = s.post(self.url + "/auth/tokens", timeout=30, json={"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": cred["id"], "secret": cred["secret"]}}}})
            if resp.status_code != 201:
                raise RuntimeError(f"keystone token: {resp.status_code} {resp.text}")
            token = resp.headers["X-Subject-Token"]
            expires_at = datetime.datetime.fromisoformat(
                resp.json()["token"]["expires_at"].replace("Z", "+00:00"))
            return token, expires_at

    def auth_env(self, user: str) -> dict[str, str]:
        """OS_* variables with which the ``openstack`` shell acts as ``user``
        in its own project."""
        return {
            "OS_AUTH_URL": self.url,
            "OS_AUTH_TYPE": "password",
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": user,
            "OS_PASSWORD": self.passwords[user],
            "OS_PROJECT_NAME": self.default_project(user),
            "OS_USER_DOMAIN_NAME": DOMAIN,
            "OS_PROJECT_DOMAIN_NAME": DOMAIN,
            "OS_REGION_NAME": REGION,
            "OS_INTERFACE": "public",
        }

    def authtoken_options(self) -> dict[str, str]:
        """``[keystone_authtoken]`` of a clouddisco-api that validates this
        Keystone's tokens as the ``clouddisco`` service user."""
        return {
            "www_authenticate_uri": self.url,
            "auth_url": self.url,
            "auth_type": "password",
            "username": SERVICE_NAME,
            "password": self.passwords[SERVICE_NAME],
            "user_domain_name": DOMAIN,
            "project_name": "service",
            "project_domain_name": DOMAIN,
            "region_name": REGION,
            "service_type": SERVICE_TYPE,
            "http_connect_timeout": "5",
        }

    def authtoken_section(self) -> str:
        return "[keystone_authtoken]\n" + "".join(
            f"{k} = {v}\n" for k, v in self.authtoken_options().items())


def main() -> None:
    """``python -m lab.keystone``: start one and print how to use it, until Ctrl-C."""
    with Keystone() as ks:
        print(f"keystone at {ks.url} (started in {ks.start_seconds:.1f} s)")
        for user in USERS:
            print(" ".join(f"{k}={v}" for k, v in ks.auth_env(user).items()))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
