"""The routing policy on plain data: no cluster needed."""

from caikit_dask.loading.replicas.routing import Load, choose_replica


def test_fewest_outstanding_calls_wins():
    loads = [Load(True, 3, 1), Load(True, 1, 2), Load(True, 2, 3)]
    assert choose_replica(loads) == 1


def test_ties_go_to_the_least_recently_used():
    loads = [Load(True, 1, 9), Load(True, 1, 4), Load(True, 1, 7)]
    assert choose_replica(loads) == 1


def test_dead_replicas_are_never_chosen():
    loads = [Load(False, 0, 0), Load(True, 5, 9)]
    assert choose_replica(loads) == 1


def test_no_live_replica_means_none():
    assert choose_replica([]) is None
    assert choose_replica([Load(False, 0, 0), Load(False, 0, 1)]) is None


def test_replicas_a_call_already_tried_come_last():
    loads = [Load(True, 0, 0), Load(True, 4, 9), Load(True, 2, 5)]
    assert choose_replica(loads, tried=[0]) == 2
    assert choose_replica(loads, tried=[0, 2]) == 1


def test_a_tried_replica_is_used_again_when_it_is_the_only_live_one():
    loads = [Load(True, 0, 0), Load(False, 0, 0)]
    assert choose_replica(loads, tried=[0]) == 0


def test_calls_spread_evenly_when_each_choice_is_counted():
    loads = [Load(True, 0, 0) for _ in range(3)]
    chosen = []
    for call in range(1, 10):
        index = choose_replica(loads)
        chosen.append(index)
        loads[index] = Load(True, loads[index].outstanding + 1, call)
    assert [chosen.count(index) for index in range(3)] == [3, 3, 3]
    assert chosen[:3] == [0, 1, 2]
