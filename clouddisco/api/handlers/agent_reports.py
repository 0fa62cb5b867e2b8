"""``POST /v1/agent-reports``: agents' state reports over HTTP, for when the
message bus or every scheduler is down (see ``clouddisco.heartbeat``).

Not a tenant API: the request carries no token but an HMAC of its body under
``[health] report_key``, which only the control plane and the network nodes
hold. Without that key configured the path does not exist (404).
"""

import json

import webob
from oslo_log import log as logging

from clouddisco import heartbeat
from clouddisco.api import util
from clouddisco.api.errors import HTTPError

LOG = logging.getLogger(__name__)


def receive_report(req: webob.Request) -> webob.Response:
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
    if req.content_type != "application/json":
        raise HTTPError(415, "request body must be JSON (Content-Type: application/json)")
    try:
        report = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HTTPError(400, f"request body is not valid JSON: {exc}") from None
    if not heartbeat.REPORT_VALIDATOR.is_valid(report):
        util.validate(report, heartbeat.REPORT_SCHEMA)  # raises, naming the field
    reply = heartbeat.receive(app.db, report["host"], report["state"],
                              app.conf.health.lease_time)
    if not reply["registered"]:
        LOG.info("HTTP report from %s (lease generation %s) renews nothing: the agent "
                 "must register again", report["host"], report["state"]["lease_generation"])
    return util.json_response(reply)
