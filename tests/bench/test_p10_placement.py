"""P10's placement (bench/p10_throughput.py): the API host on a core of its own, the rig on the
others, as in Azure; the caps follow the placement, and placing a thread is undone after."""

from __future__ import annotations

import os

from bench.p10_throughput import CONFIGS, Measured
from bench.placement import Cores, placed, placed_process

CPU = {"API": 8.0, "emulators": 8.0, "clients": 2.0, "store": 0.0}


def measured(cores: Cores) -> Measured:
    # 4,000 requests in 10 s: the API 2 ms of CPU each, the emulators 2, the clients 0.5.
    return Measured(CONFIGS[0], 64, 4000, 0, 10.0, CPU, 94.0, 4000, cores, 18.0, 0.5)


def test_on_two_cores_the_api_has_one_and_the_rig_the_other() -> None:
    m = measured(Cores(frozenset({0}), frozenset({1})))
    assert m.caps["the API's core"] == 500  # 1,000 ÷ 2 ms
    assert m.caps["the other core (emulators, clients and store)"] == 400  # 1,000 ÷ 2.5 ms
    assert "one core for the API" not in m.caps  # the API's core says it already
    assert m.bound == ("the other core (emulators, clients and store)", 400)
    assert m.ratio == 1.0  # 400/s served


def test_on_one_core_every_process_shares_it() -> None:
    m = measured(Cores(frozenset({0}), frozenset({0})))
    assert m.caps["1 core for all processes"] == 1000 / 4.5
    assert m.bound[0] == "1 core for all processes"


def test_the_split_keeps_to_this_process_cores() -> None:
    cores = Cores.split()
    mine = os.sched_getaffinity(0)
    assert cores.api | cores.rest == mine
    assert cores.shared == (len(mine) == 1)
    if not cores.shared:
        assert len(cores.api) == 1
        assert not cores.api & cores.rest


def test_placing_a_thread_is_undone_afterwards() -> None:
    before = os.sched_getaffinity(0)
    one = frozenset(sorted(before)[:1])
    with placed(one):
        assert os.sched_getaffinity(0) == one
    assert os.sched_getaffinity(0) == before


def test_placing_the_process_moves_every_thread_and_puts_each_back() -> None:
    import threading

    release = threading.Event()
    worker = threading.Thread(target=release.wait, args=(10,))
    worker.start()
    try:
        before = os.sched_getaffinity(0)
        one = frozenset(sorted(before)[:1])
        assert worker.native_id is not None
        with placed_process(one):
            assert os.sched_getaffinity(0) == one
            assert os.sched_getaffinity(worker.native_id) == one
        assert os.sched_getaffinity(0) == before
        assert os.sched_getaffinity(worker.native_id) == before
    finally:
        release.set()
        worker.join()
