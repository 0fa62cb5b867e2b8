"""clouddisco's access rules, with their defaults in code (oslo.policy).

One module per resource, each with ``list_rules()``. ``list_rules`` here is
the ``oslo.policy.policies`` entry point from which
``oslopolicy-sample-generator`` writes etc/clouddisco/policy.yaml.sample; an
operator overrides any rule in ``[oslo_policy] policy_file`` (policy.yaml).
"""

import itertools

from clouddisco.policies import agents
from clouddisco.policies import base
from clouddisco.policies import failover_events
from clouddisco.policies import routers


def list_rules():
    return list(itertools.chain(
        base.list_rules(),
        routers.list_rules(),
        agents.list_rules(),
        failover_events.list_rules(),
    ))
