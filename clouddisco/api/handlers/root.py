"""Version discovery."""

import webob

from clouddisco.api import util

VERSION = {"id": "v1", "status": "CURRENT"}


def versions(req: webob.Request) -> webob.Response:
    return util.json_response({"versions": [dict(VERSION, links=[
        {"rel": "self", "href": f"{req.host_url}/v1/"}])]})
