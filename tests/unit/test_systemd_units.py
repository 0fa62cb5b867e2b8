"""etc/systemd/*.service, read as files: one unit per long-running service,
with the restart policy and ordering the services rely on. That systemd
really acts on them is tests/functional/test_units.py's business."""

import configparser
import os

import testtools

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT_DIR = os.path.join(REPO, "etc", "systemd")
CONFIG = "--config-file /etc/clouddisco/clouddisco.conf"

# Every console script of setup.cfg that runs as a service, and how.
SERVICES = {
    "clouddisco-api": "/usr/local/bin/clouddisco-api " + CONFIG,
    "clouddisco-scheduler": "/usr/local/bin/clouddisco-scheduler " + CONFIG,
    "clouddisco-l3-agent": "/usr/local/bin/clouddisco-l3-agent " + CONFIG,
    "clouddisco-cleanup": "/usr/local/bin/clouddisco-cleanup --daemon " + CONFIG,
}
# One-shot commands, not services.
COMMANDS = {"clouddisco-db-manage"}


def read_unit(name):
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    with open(os.path.join(UNIT_DIR, name)) as f:
        parser.read_file(f)
    return parser


def words(parser, section, key):
    return parser.get(section, key, fallback="").split()


class ShippedUnitFilesTest(testtools.TestCase):

    def test_a_unit_for_every_service(self):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(os.path.join(REPO, "setup.cfg"))
        scripts = {line.split("=")[0].strip() for line in
                   parser.get("entry_points", "console_scripts").splitlines() if line.strip()}
        self.assertEqual(scripts - COMMANDS, set(SERVICES))
        self.assertEqual({f"{name}.service" for name in SERVICES},
                         set(os.listdir(UNIT_DIR)))

    def test_notify_restart_and_command(self):
        for name, command in SERVICES.items():
            unit = read_unit(f"{name}.service")
            service = unit["Service"]
            self.assertEqual("notify", service["Type"], name)
            self.assertEqual("always", service["Restart"], name)
            self.assertEqual(command, service["ExecStart"], name)
            self.assertEqual("/bin/kill -HUP $MAINPID", service["ExecReload"], name)
            self.assertEqual("multi-user.target", unit["Install"]["WantedBy"], name)
            self.assertIn("network-online.target", words(unit, "Unit", "After"), name)
            # READY=1 comes from a scheduler worker, not cotyledon's master.
            self.assertEqual("all" if name == "clouddisco-scheduler" else "main",
                             service["NotifyAccess"], name)

    def test_node_guard_before_the_agent(self):
        agent = read_unit("clouddisco-l3-agent.service")
        self.assertIn("clouddisco-cleanup.service", words(agent, "Unit", "After"))
        self.assertIn("clouddisco-cleanup.service", words(agent, "Unit", "Wants"))
        guard = read_unit("clouddisco-cleanup.service")
        self.assertNotIn("clouddisco-l3-agent.service", words(guard, "Unit", "After"))

    def test_controller_services_after_local_database_and_broker(self):
        for name in ("clouddisco-api", "clouddisco-scheduler"):
            unit = read_unit(f"{name}.service")
            after = words(unit, "Unit", "After")
            self.assertIn("mariadb.service", after, name)
            self.assertIn("rabbitmq-server.service", after, name)
            # Ordering only: the database and broker may be on other hosts.
            for key in ("Wants", "Requires", "BindsTo"):
                pulled = words(unit, "Unit", key)
                self.assertNotIn("mariadb.service", pulled, (name, key))
                self.assertNotIn("rabbitmq-server.service", pulled, (name, key))
            self.assertEqual("0", unit["Unit"]["StartLimitIntervalSec"], name)
