"""``POST /v1/agent-reports``: agents' state reports over HTTP, for when the
message bus or every scheduler is down (see ``clouddisco.heartbeat``).

Not a tenant API: the request carries no token but an HMAC of its body under
``[health] report_key``, which only the control plane and the network nodes
hold. Without that key configured the path does not exist (404).
"""


import webob
from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco.api import util
from clouddisco.api.errors import HTTPError

LOG = logging.getLogger(__name__)


def _signed_json(req: webob.Request) -> dict:
    """The body of a request signed with ``[health] report_key``, parsed."""
    app = req.environ["clouddisco.app"]
    key = app.conf.health.report_key
    if not key:
        raise HTTPError(404, "agent reports over HTTP are disabled ([health] report_key "
                        "is not set)")
    body = req.body
    if not heartbeat.signature_valid(key, body, req.headers.get(heartbeat.SIGNATURE_HEADER)):
        LOG.warning("agent report from %s refused: bad or missing %s", req.remote_addr,
                    heartbeat.SIGNATURE_HEADER)
        raise HTTPError(401, f"missing or invalid {heartbeat.SIGNATURE_HEADER}: the report "
                        "must be signed with [health] report_key")
    util.check_json_type(req)
    return util.parse_json(body)


def receive_report(req: webob.Request) -> webob.Response:
    app = req.environ["clouddisco.app"]
    report = _signed_json(req)
    if not heartbeat.REPORT_VALIDATOR.is_valid(report):
        util.validate(report, heartbeat.REPORT_SCHEMA)  # raises, naming the field
    reply = heartbeat.receive(app.db, report["host"], report["state"],
                              app.conf.health.lease_time)
    if not reply["registered"]:
        LOG.info("HTTP report from %s (lease generation %s) renews nothing: the agent "
                 "must register again", report["host"], report["state"]["lease_generation"])
    return util.json_response(reply)


def receive_fence(req: webob.Request) -> webob.Response:
    """A node guard removed every router of a lease: record it, so that the
    monitors move them at their next pass (they act on fenced agents), and
    the API stops showing them ACTIVE there. The RPC path (host_fenced) also
    moves them at once; this one is for when RPC cannot carry the report."""
    app = req.environ["clouddisco.app"]
    fence = _signed_json(req)
    util.validate(fence, heartbeat.FENCE_SCHEMA)
    agent = app.db.fence_agent(fence["host"], fence["generation"])
    if agent is None:
        LOG.info("fence report from %s for lease generation %d ignored: the agent "
                 "registered again since", fence["host"], fence["generation"])
        return util.json_response({"acknowledged": True, "moved": 0})
    LOG.warning("host %s fenced itself (%s), reported over HTTP: the monitors move the "
                "routers of agent %s at their next pass", fence["host"], fence["reason"],
                agent["id"])
    return util.json_response({"acknowledged": True, "moved": None})
