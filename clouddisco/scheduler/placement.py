"""Where routers go: pure functions over agent loads, no I/O."""

import heapq
import random
from collections.abc import Sequence


def pick_agent(candidates: Sequence[dict]) -> dict | None:
    """The least-loaded candidate (``load`` key); ties are broken at random so
    that concurrent scheduler replicas do not all pick the same agent."""
    if not candidates:
        return None
    least = min(c["load"] for c in candidates)
    return random.choice([c for c in candidates if c["load"] == least])


def spread(router_ids: Sequence[str], candidates: Sequence[dict]) -> dict[str, str]:
    """Assign routers to candidates by water-filling: each router goes to the
    currently least-loaded agent, so the receivers end within one router of each
    other (or below the already fuller agents, which get nothing).

    Returns {router_id: agent_id}; empty when there are no candidates.
    """
    if not candidates:
        return {}
    # (load, tie-breaker, agent id): the random tie-breaker keeps two monitors
    # from agreeing on the same order when they both run.
    heap = [(c["load"], random.random(), c["id"]) for c in candidates]
    heapq.heapify(heap)
    placement = {}
    for router_id in router_ids:
        load, tie, agent_id = heapq.heappop(heap)
        placement[router_id] = agent_id
        heapq.heappush(heap, (load + 1, tie, agent_id))
    return placement
