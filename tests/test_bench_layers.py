"""bench.layers' probe layers do what docs/performance.md says they do."""
import pytest

from bench.layers import chase, chase_ring


@pytest.mark.parametrize("n", [1, 2, 7, 500])
def test_the_chase_ring_visits_every_node_once_and_comes_back(n):
    head = chase_ring(n)
    seen, node = set(), head
    for _ in range(n):
        assert id(node) not in seen
        seen.add(id(node))
        node = node[0]
    assert node is head and len(seen) == n
    assert chase(head, n) is head


def test_the_chase_ring_is_not_in_allocation_order():
    """Linked in a random order: walking it does not visit the nodes in the
    order they were made (and laid out), which the CPU would fetch ahead."""
    head = chase_ring(200)
    ids, node = [], head
    for _ in range(200):
        ids.append(id(node))
        node = node[0]
    ascending = sum(b > a for a, b in zip(ids, ids[1:]))
    assert 50 < ascending < 150

