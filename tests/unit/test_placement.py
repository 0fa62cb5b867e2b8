import collections

import testtools

from clouddisco.scheduler import placement


def agents(*loads):
    return [{"id": f"a{i}", "host": f"h{i}", "load": load} for i, load in enumerate(loads)]


class PickAgentTest(testtools.TestCase):
    def test_least_loaded_wins(self):
        self.assertEqual("a1", placement.pick_agent(agents(3, 1, 2))["id"])

    def test_ties_are_spread(self):
        picks = {placement.pick_agent(agents(0, 0, 5))["id"] for _ in range(200)}
        self.assertEqual({"a0", "a1"}, picks)

    def test_no_candidates(self):
        self.assertIsNone(placement.pick_agent([]))


class SpreadTest(testtools.TestCase):
    def test_even_agents_end_within_one(self):
        result = placement.spread([f"r{i}" for i in range(1000)], agents(0, 0, 0, 0))
        counts = collections.Counter(result.values())
        self.assertEqual(1000, sum(counts.values()))
        self.assertLessEqual(max(counts.values()) - min(counts.values()), 1)

    def test_uneven_agents_are_levelled(self):
        cands = agents(0, 5, 10)
        result = placement.spread([f"r{i}" for i in range(9)], cands)
        final = {c["id"]: c["load"] for c in cands}
        for agent_id in result.values():
            final[agent_id] += 1
        # The fullest agent gets nothing; the other two are levelled at 7.
        self.assertEqual({"a0": 7, "a1": 7, "a2": 10}, final)

    def test_not_all_to_the_emptiest(self):
        result = placement.spread(["r1", "r2", "r3", "r4"], agents(0, 1))
        counts = collections.Counter(result.values())
        # Loads end at 3 and 2 (in some order): both agents receive routers.
        self.assertEqual({2, 3}, {counts["a0"], counts["a1"] + 1})

    def test_no_candidates(self):
        self.assertEqual({}, placement.spread(["r1"], []))
