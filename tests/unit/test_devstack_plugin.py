"""The devstack plugin (devstack/settings, devstack/plugin.sh), run with bash.

Each phase runs the way devstack runs it (settings sourced, then
``source plugin.sh MODE PHASE``), against stubs of every function devstack
defines (tests/unit/devstack_functions.txt, taken from devstack's tree) that
record their name and arguments. PATH holds only recording stand-ins for
the few commands the plugin may run (sudo, rm, which, the clouddisco
scripts...): nothing is installed, written or removed, and a call to any
other function or command fails the phase. So the plugin can only call what
devstack really provides, and each test checks the calls and their order.
"""

import os
import shutil
import subprocess

import fixtures
import testtools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(REPO, "devstack", "plugin.sh")
SETTINGS = os.path.join(REPO, "devstack", "settings")
FUNCTIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "devstack_functions.txt")

ALL = "clouddisco-api,clouddisco-scheduler,clouddisco-cleanup,clouddisco-l3"
NETWORK_NODE = "clouddisco-cleanup,clouddisco-l3"

# Commands the plugin may run besides devstack's functions. Each records its
# call; `which` also answers, `grep` is the real one (devstack's own
# xtrace save/restore idiom pipes `set +o` through it).
COMMANDS = ("sudo", "rm", "which", "uwsgi", "clouddisco-db-manage", "clouddisco-cleanup",
            "clouddisco-api", "clouddisco-scheduler", "clouddisco-l3-agent")

RECORDER = """#!/bin/bash
{ printf '%s' "${0##*/}"; printf '\\t%s' "$@"; printf '\\n'; } >> "$CALLS"
if [[ "${0##*/}" == which ]]; then echo "$FAKE_BIN/$1"; fi
"""

HARNESS = r"""
set -o errexit -o pipefail
record() { local IFS=$'\t'; printf '%s\n' "$*" >> "$CALLS"; }
while read -r name; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    eval "function $name { record $name \"\$@\"; }"
done < "$FUNCTIONS"
# Stubs that must also behave: queries answer as devstack's would.
function is_service_enabled {
    local s
    for s in "$@"; do [[ ",$ENABLED_SERVICES," == *",$s,"* ]] && return 0; done
    return 1
}
function enable_service {
    record enable_service "$@"
    local s
    for s in "$@"; do ENABLED_SERVICES+=",$s"; done
}
function get_python_exec_prefix { echo "$FAKE_BIN"; }
function database_connection_url {
    record database_connection_url "$@"
    echo "mysql+pymysql://root:secret@127.0.0.1/$1?charset=utf8"
}
function get_or_create_service { record get_or_create_service "$@"; echo SERVICE-ID; }
command_not_found_handle() { record NOT-FOUND "$@"; echo "not found: $1" >&2; return 127; }
PATH="$FAKE_BIN"
source "$SETTINGS"
record "--- $1 $2"
source "$PLUGIN" "$1" "$2"
"""


class DevstackPluginTest(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.fake_bin = os.path.join(self.tmp, "bin")
        os.mkdir(self.fake_bin)
        for name in COMMANDS:
            path = os.path.join(self.fake_bin, name)
            with open(path, "w") as f:
                f.write(RECORDER)
            os.chmod(path, 0o755)
        os.symlink(shutil.which("grep"), os.path.join(self.fake_bin, "grep"))
        self.conf_dir = os.path.join(self.tmp, "etc-clouddisco")
        self.conf = os.path.join(self.conf_dir, "clouddisco.conf")
        self.harness = os.path.join(self.tmp, "harness.sh")
        with open(self.harness, "w") as f:
            f.write(HARNESS)

    def run_phase(self, mode, phase="", enabled=ALL, conf_exists=False):
        """(calls while sourcing settings, calls of the phase): lists of argv."""
        calls = os.path.join(self.tmp, f"calls-{mode}-{phase}")
        if conf_exists:
            os.makedirs(self.conf_dir, exist_ok=True)
            open(self.conf, "w").close()
        env = {
            "CALLS": calls, "FAKE_BIN": self.fake_bin, "FUNCTIONS": FUNCTIONS,
            "SETTINGS": SETTINGS, "PLUGIN": PLUGIN, "ENABLED_SERVICES": enabled,
            "DEST": "/opt/stack", "DATA_DIR": "/opt/stack/data", "STACK_USER": "stack",
            "SERVICE_PROTOCOL": "http", "SERVICE_HOST": "10.0.0.5",
            "REGION_NAME": "RegionOne", "ENABLE_DEBUG_LOG_LEVEL": "True",
            "CLOUDDISCO_CONF_DIR": self.conf_dir,
        }
        proc = subprocess.run(["/bin/bash", self.harness, mode, phase], env=env,
                              capture_output=True, text=True, timeout=60)
        lines = open(calls).read().splitlines() if os.path.exists(calls) else []
        argvs = [line.split("\t") for line in lines]
        missing = [a for a in argvs if a[0] == "NOT-FOUND"]
        self.assertEqual([], missing, "the plugin called what devstack does not define")
        self.assertEqual(0, proc.returncode, f"{mode} {phase} failed:\n{proc.stderr}")
        marker = [i for i, a in enumerate(argvs) if a[0].startswith("--- ")]
        self.assertEqual(1, len(marker), lines)
        return argvs[:marker[0]], argvs[marker[0] + 1:]

    def names(self, calls, name):
        return [c for c in calls if c[0] == name]

    def assertInOrder(self, calls, expected):
        """``expected`` argvs appear in ``calls`` in this order (others may be between)."""
        position = 0
        for want in expected:
            try:
                position = calls.index(want, position) + 1
            except ValueError:
                self.fail(f"{want} not called (in order) in:\n" +
                          "\n".join(" ".join(c) for c in calls))

    # ------------------------------------------------------------------ settings

    def test_function_list_is_devstacks(self):
        with open(FUNCTIONS) as f:
            names = {line.strip() for line in f if line.strip() and not line.startswith("#")}
        self.assertGreater(len(names), 500)
        for name in ("run_process", "stop_process", "write_uwsgi_config", "iniset",
                     "configure_keystone_authtoken_middleware", "iniset_rpc_backend",
                     "recreate_database", "get_or_create_endpoint", "setup_develop"):
            self.assertIn(name, names)
        # The plugin's own functions must not replace one of devstack's.
        with open(PLUGIN) as f:
            own = {line.split()[1] for line in f if line.startswith("function ")}
        self.assertIn("start_clouddisco", own)
        self.assertEqual(set(), own & names)

    def test_settings_enable_all_four_when_none_named(self):
        settings, _ = self.run_phase("stack", "install", enabled="key,mysql,rabbit")
        self.assertEqual([["define_plugin", "clouddisco"],
                          ["enable_service", "clouddisco-api", "clouddisco-scheduler",
                           "clouddisco-cleanup", "clouddisco-l3"]], settings)

    def test_settings_keep_an_explicit_choice(self):
        settings, _ = self.run_phase("stack", "install", enabled=NETWORK_NODE)
        self.assertEqual([["define_plugin", "clouddisco"]], settings)

    # --------------------------------------------------------------------- stack

    def test_stack_install(self):
        _, calls = self.run_phase("stack", "install")
        self.assertEqual([["echo_summary", "Installing clouddisco"],
                          ["setup_develop", "/opt/stack/clouddisco"]], calls)

    def test_stack_post_config(self):
        _, calls = self.run_phase("stack", "post-config")
        conf = self.conf
        self.assertInOrder(calls, [
            ["sudo", "install", "-d", "-o", "stack", self.conf_dir],
            ["rm", "-f", conf],
            ["iniset_rpc_backend", "clouddisco", conf],
            ["database_connection_url", "clouddisco"],
            ["iniset", conf, "database", "connection",
             "mysql+pymysql://root:secret@127.0.0.1/clouddisco?charset=utf8"],
            ["iniset", conf, "api", "auth_strategy", "keystone"],
            ["configure_keystone_authtoken_middleware", conf, "clouddisco",
             "keystone_authtoken", "l3-ha"],
            ["iniset", conf, "agent", "state_dir", "/opt/stack/data/clouddisco"],
            # devstack's current signature: conf, module path, url, http, name.
            ["write_uwsgi_config", os.path.join(self.conf_dir, "clouddisco-api-uwsgi.ini"),
             "clouddisco.wsgi.api:application", "/l3-ha", "", "clouddisco-api"],
            ["recreate_database", "clouddisco"],
            # oslo.config: options before the sub-command.
            ["clouddisco-db-manage", "--config-file", conf, "upgrade", "head"],
        ])
        # The schema is upgraded once the configuration is complete.
        last_config = max(i for i, c in enumerate(calls)
                          if c[0] in ("iniset", "iniset_rpc_backend",
                                      "configure_keystone_authtoken_middleware"))
        self.assertLess(last_config, calls.index(["recreate_database", "clouddisco"]))
        self.assertEqual(1, len(self.names(calls, "clouddisco-db-manage")))
        self.assertEqual([], self.names(calls, "run_process"))
        self.assertEqual([], self.names(calls, "get_or_create_service"))

    def test_stack_extra(self):
        _, calls = self.run_phase("stack", "extra")
        self.assertInOrder(calls, [
            ["create_service_user", "clouddisco", "admin"],
            ["get_or_create_service", "clouddisco", "l3-ha", "clouddisco HA virtual routers"],
            ["get_or_create_endpoint", "SERVICE-ID", "RegionOne", "http://10.0.0.5/l3-ha"],
        ])
        runs = self.names(calls, "run_process")
        # The node guard before the agent; every devstack@<name>.service.
        self.assertEqual(["clouddisco-api", "clouddisco-scheduler", "clouddisco-cleanup",
                          "clouddisco-l3"], [r[1] for r in runs])
        self.assertLess(calls.index(["get_or_create_endpoint", "SERVICE-ID", "RegionOne",
                                     "http://10.0.0.5/l3-ha"]), calls.index(runs[0]))
        bin_dir = self.fake_bin
        api, scheduler, guard, agent = runs
        self.assertEqual(["run_process", "clouddisco-api",
                          f"{bin_dir}/uwsgi --procname-prefix clouddisco-api --ini "
                          f"{self.conf_dir}/clouddisco-api-uwsgi.ini", "", "",
                          f"CLOUDDISCO_CONFIG_FILE={self.conf}"], api)
        self.assertEqual(["run_process", "clouddisco-scheduler",
                          f"{bin_dir}/clouddisco-scheduler --config-file {self.conf}"],
                         scheduler)
        self.assertEqual(["run_process", "clouddisco-cleanup",
                          f"{bin_dir}/clouddisco-cleanup --daemon --config-file {self.conf}",
                          "", "root"], guard)
        self.assertEqual(["run_process", "clouddisco-l3",
                          f"{bin_dir}/clouddisco-l3-agent --config-file {self.conf}",
                          "", "root"], agent)

    def test_network_node_has_no_database_or_keystone_work(self):
        _, post = self.run_phase("stack", "post-config", enabled=NETWORK_NODE)
        _, extra = self.run_phase("stack", "extra", enabled=NETWORK_NODE)
        for name in ("recreate_database", "clouddisco-db-manage", "write_uwsgi_config"):
            self.assertEqual([], self.names(post, name), name)
        self.assertIn(["iniset", self.conf, "agent", "external_bridge", "br-clouddisco"], post)
        for name in ("create_service_user", "get_or_create_service", "get_or_create_endpoint"):
            self.assertEqual([], self.names(extra, name), name)
        self.assertEqual(["clouddisco-cleanup", "clouddisco-l3"],
                         [r[1] for r in self.names(extra, "run_process")
                          if r[1] in NETWORK_NODE.split(",")])

    def test_other_phases_do_nothing(self):
        _, calls = self.run_phase("stack", "test-config")
        self.assertEqual([], calls)

    # ------------------------------------------------------------ unstack, clean

    def test_unstack_stops_every_service(self):
        _, calls = self.run_phase("unstack")
        self.assertEqual([["stop_process", "clouddisco-l3"],
                          ["stop_process", "clouddisco-cleanup"],
                          ["stop_process", "clouddisco-scheduler"],
                          ["stop_process", "clouddisco-api"]], calls)

    def test_clean_removes_state(self):
        _, calls = self.run_phase("clean", conf_exists=True)
        self.assertEqual([
            ["sudo", f"{self.fake_bin}/clouddisco-cleanup", "--config-file", self.conf,
             "--all"],
            ["remove_uwsgi_config", f"{self.conf_dir}/clouddisco-api-uwsgi.ini",
             "clouddisco-api"],
            ["sudo", "rm", "-rf", "/opt/stack/data/clouddisco", self.conf_dir],
        ], calls)

    def test_clean_without_configuration(self):
        _, calls = self.run_phase("clean")
        self.assertEqual([], self.names(calls, "sudo")[:-1])
        self.assertEqual(["sudo", "rm", "-rf", "/opt/stack/data/clouddisco", self.conf_dir],
                         calls[-1])

    # ---------------------------------------------------------------- shell lint

    def test_bash_syntax(self):
        for path in (PLUGIN, SETTINGS):
            proc = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
            self.assertEqual(0, proc.returncode, proc.stderr)

    def test_shellcheck(self):
        shellcheck = shutil.which("shellcheck")
        if shellcheck is None:
            self.skipTest("shellcheck is not installed (Debian package shellcheck; "
                          "tools/setup-env.sh installs it)")
        proc = subprocess.run([shellcheck, "-s", "bash", PLUGIN, SETTINGS],
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
