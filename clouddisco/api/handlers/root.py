"""Version discovery, as every OpenStack API answers it.

``GET /`` lists the versions (``{"versions": [...]}``), ``GET /v1`` describes
the one it names (``{"version": {...}}``). Both are public: clients and load
balancers ask before they have a token.

No microversions: ``min_version`` and ``max_version`` are empty strings,
which is how an OpenStack service says it has none (see
doc/source/api-ref.rst for why, and what a first incompatible change would
do). An ``OpenStack-API-Version`` header is ignored.
"""

import webob

from clouddisco.api import util

VERSION = {
    "id": "v1.0",
    "status": "CURRENT",
    "min_version": "",
    "max_version": "",
    "updated": "2026-12-04T00:00:00Z",
    "media-types": [{"base": "application/json",
                     "type": "application/vnd.openstack.l3-ha-v1+json"}],
}


def _version(req: webob.Request) -> dict:
    base = f"{req.host_url}{req.script_name}"
    return dict(VERSION, links=[{"rel": "self", "href": f"{base}/v1/"},
                                {"rel": "describedby", "type": "text/html",
                                 "href": "https://docs.openstack.org/clouddisco/latest/"
                                         "api-ref.html"}])


def versions(req: webob.Request) -> webob.Response:
    """``GET /``: every version of the API (one)."""
    return util.json_response({"versions": [_version(req)]})


def version(req: webob.Request) -> webob.Response:
    """``GET /v1``: this version."""
    return util.json_response({"version": _version(req)})
