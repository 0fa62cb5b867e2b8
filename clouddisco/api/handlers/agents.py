"""Handlers of /v1/agents (admin only by default: clouddisco.policies.agents)."""

import webob
from oslo_log import log as logging

from clouddisco.api import auth
from clouddisco.api import policy
from clouddisco.api import util
from clouddisco.api.schemas import agents as schema
from clouddisco.policies import agents as rules

LOG = logging.getLogger(__name__)


def list_agents(req: webob.Request) -> webob.Response:
    policy.authorize(req, rules.LIST, "listing agents")
    app = req.environ["clouddisco.app"]
    limit = util.page_size(req, app.conf.api.max_limit)
    agents = app.db.list_agents(app.conf.health.agent_down_time, limit=limit + 1,
                                marker=util.uuid_marker(req))
    return util.paged_response(req, "agents", agents, limit)


def show_agent(req: webob.Request) -> webob.Response:
    policy.authorize(req, rules.SHOW, "showing an agent")
    app = req.environ["clouddisco.app"]
    agent_id = util.check_uuid(req.urlvars["agent_id"], "agent")
    return util.json_response({"agent": app.db.get_agent(agent_id,
                                                         app.conf.health.agent_down_time)})


def update_agent(req: webob.Request) -> webob.Response:
    ctx = auth.get_context(req)
    policy.authorize(req, rules.UPDATE, "changing an agent")
    app = req.environ["clouddisco.app"]
    agent_id = util.check_uuid(req.urlvars["agent_id"], "agent")
    body = util.read_json(req, schema.UPDATE)
    app.db.set_agent_admin_state(agent_id, body["admin_state_up"])
    LOG.info("agent %s admin_state_up set to %s by project %s", agent_id,
             body["admin_state_up"], ctx.project_id)
    return util.json_response({"agent": app.db.get_agent(agent_id,
                                                         app.conf.health.agent_down_time)})
