"""blagh/offload.py under gevent, as gunicorn's workers run it: jobs on OS threads of their own,
bounded, results and exceptions back to the waiting greenlet, the loop free meanwhile.

Each case runs in a child process patched by gevent's monkey (the test process is not), in
the order a worker meets them, and reports what it saw as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
from gevent import monkey

monkey.patch_all()

import json
import time

import gevent

from blagh.offload import Busy, Offload, native_lock, native_thread_id

seen = {}
deadline = time.monotonic() + 60


def until(condition):
    # Yields to the loop while waiting: a loop stalled by a job would never get here again.
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        gevent.sleep(0.001)


offload = Offload("test", threads=2, queue=1)
loop = native_thread_id()
seen["other_thread"] = offload.run(native_thread_id) != loop


class Oops(Exception):
    pass


def fails():
    raise Oops("the job's own error")


try:
    offload.run(fails)
except Oops as error:
    seen["raised"] = str(error)

gate = native_lock()
gate.acquire()
count = native_lock()
state = {"now": 0, "most": 0, "ticks": 0}


def held():
    with count:
        state["now"] += 1
        state["most"] = max(state["most"], state["now"])
    with gate:
        pass
    with count:
        state["now"] -= 1
    return "done"


def ticker():
    while True:
        state["ticks"] += 1
        gevent.sleep(0.001)


ticking = gevent.spawn(ticker)
waiting = [gevent.spawn(offload.run, held) for _ in range(3)]
until(lambda: state["now"] == 2 and offload.in_flight == 3)
before = state["ticks"]
until(lambda: state["ticks"] > before + 5)
seen["loop_ran_while_jobs_held"] = True
try:
    offload.run(held)
except Busy:
    seen["busy_past_bound"] = True
gate.release()
seen["results"] = [greenlet.get() for greenlet in waiting]
seen["most_at_once"] = state["most"]

gate.acquire()
victim = gevent.spawn(offload.run, held)
until(lambda: state["now"] == 1)
victim.kill()
gate.release()
seen["after_a_killed_waiter"] = offload.run(lambda: 5)
until(lambda: state["now"] == 0)
seen["in_flight_after"] = offload.in_flight

seen["nested_runs_in_place"] = offload.run(
    lambda: offload.run(native_thread_id) == native_thread_id()
)


def square_or_busy(i):
    try:
        return offload.run(lambda: i * i)
    except Busy:
        return "busy"


many = [gevent.spawn(square_or_busy, i) for i in range(200)]
outcomes = [greenlet.get() for greenlet in many]
seen["many_refused"] = outcomes.count("busy") > 0
seen["many_right"] = all(o == i * i for i, o in enumerate(outcomes) if o != "busy")
seen["many_served"] = sum(o != "busy" for o in outcomes) >= 3
ticking.kill()
offload.close()
try:
    offload.run(lambda: 1)
except Busy:
    seen["closed"] = True
print(json.dumps(seen))
"""


def test_offload_under_gevent() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen == {
        "other_thread": True,
        "raised": "the job's own error",
        "loop_ran_while_jobs_held": True,
        "busy_past_bound": True,
        "results": ["done", "done", "done"],
        "most_at_once": 2,
        "after_a_killed_waiter": 5,
        "in_flight_after": 0,
        "nested_runs_in_place": True,
        "many_refused": True,
        "many_right": True,
        "many_served": True,
        "closed": True,
    }
