"""Handler of /v1/failover-events (admin only): the evidence of every move."""

import webob

from clouddisco.api import policy
from clouddisco.api import util
from clouddisco.api.errors import HTTPError
from clouddisco.policies import failover_events as rules


def list_failover_events(req: webob.Request) -> webob.Response:
    policy.authorize(req, rules.LIST, "listing failover events")
    app = req.environ["clouddisco.app"]
    limit = util.page_size(req, app.conf.api.max_limit)
    router_id = req.GET.get("router_id")
    if router_id is not None:
        util.check_uuid(router_id, "router")
    agent_id = req.GET.get("agent_id")
    if agent_id is not None:
        util.check_uuid(agent_id, "agent")
    events = app.db.list_failover_events(
        router_id=router_id, agent_id=agent_id, since=util.query_datetime(req, "since"),
        marker=util.int_marker(req), limit=limit + 1)
    return util.paged_response(req, "failover_events", events, limit)


def show_failover_event(req: webob.Request) -> webob.Response:
    policy.authorize(req, rules.SHOW, "showing a failover event")
    app = req.environ["clouddisco.app"]
    raw = req.urlvars["event_id"]
    # isascii: str.isdigit() is true of "²" (int() refuses it: a 500) and of
    # other scripts' digits (int("٣") is 3: another path for event 3).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise HTTPError(404, f"failover event {raw} not found")
    return util.json_response({"failover_event": app.db.get_failover_event(int(raw))})
