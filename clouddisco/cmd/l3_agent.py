"""clouddisco-l3-agent: realise the routers bound to this host."""

from clouddisco import drivers
from clouddisco import launch
from clouddisco import rpc
from clouddisco.agent import service

PROG = "clouddisco-l3-agent"


def main() -> None:
    conf = launch.prepare(PROG, groups=["DEFAULT", "agent"])
    launch.survive_sighup()
    launch.require(PROG, "the message broker ([DEFAULT] transport_url)",
                   lambda: rpc.check_broker(conf))
    driver = drivers.load_driver(conf.agent.router_driver, conf.agent.namespace_prefix,
                                 conf.agent.external_bridge)
    agent = service.L3AgentService(conf, driver, rpc.get_transport(conf))
    agent.start()
    launch.wait_for_signal(conf)
    # A planned stop leaves every router serving; the next start adopts them.
    agent.stop()
