"""A small Mesos framework written on pymesos (an existing Mesos client library from
PyPI), run unmodified against an Agora master by `.ci/mesos-compat`.

It registers, launches command tasks that finish and fail (shell and argv), kills a
running one, optionally runs a task through a custom executor written on pymesos'
MesosExecutorDriver (`--executor`), then reconciles: explicitly (its own tasks and one it
never launched) and implicitly. Each expectation is checked; the exit status says whether
all held (0), and the first that did not is printed.

Usage: framework.py MASTER_HOST:PORT [--principal P --secret S] [--executor COMMAND]
"""

import argparse
import logging
import sys
import threading
import time
import uuid

from pymesos import MesosSchedulerDriver, Scheduler

TIMEOUT_S = 90


def scalar(name, value):
    return dict(name=name, type="SCALAR", scalar=dict(value=value))


class Plan:
    """The tasks to launch, one per offer round, with the state each must end in."""

    def __init__(self, executor):
        suffix = uuid.uuid4().hex[:8]
        self.tasks = [
            # (task id, command info, expected terminal state)
            # Mesos' environment: the task sees its own id, framework, agent and sandbox.
            ("finish-" + suffix,
             dict(shell=True, value=(
                 "test \"$MESOS_TASK_ID\" = finish-%s && test -n \"$MESOS_FRAMEWORK_ID\" && "
                 "test -n \"$MESOS_AGENT_ID\" && test \"$MESOS_SANDBOX\" = \"$PWD\"" % suffix)),
             "TASK_FINISHED"),
            ("fail-" + suffix, dict(shell=True, value="exit 3"), "TASK_FAILED"),
            (
                "argv-" + suffix,
                dict(shell=False, value="/bin/sh", arguments=["sh", "-c", "test \"$1\" = hello", "sh", "hello"]),
                "TASK_FINISHED",
            ),
            ("kill-" + suffix, dict(shell=True, value="sleep 600"), "TASK_KILLED"),
        ]
        self.executor = executor
        if executor:
            self.tasks.append(("exec-" + suffix, None, "TASK_FINISHED"))
        self.ghost = "ghost-" + suffix


class Framework(Scheduler):
    def __init__(self, plan):
        self.plan = plan
        self.pending = list(plan.tasks)
        self.expected = {t[0]: t[2] for t in plan.tasks}
        self.seen = {}  # task id -> list of states
        self.ended = {}  # task id -> terminal state
        self.reconciled = {}  # task id -> (state, reason) from reconciliation
        self.phase = "launch"
        self.failure = None
        self.done = threading.Event()
        self.lock = threading.Lock()

    def fail(self, message):
        with self.lock:
            if self.failure is None:
                self.failure = message
        self.done.set()

    def registered(self, driver, framework_id, master_info):
        logging.info("registered as %s with %s", framework_id["value"], master_info)

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                task = self.pending.pop(0) if self.pending and self.phase == "launch" else None
            if task is None:
                driver.declineOffer(offer["id"], dict(refuse_seconds=1))
                continue
            cpus = sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == "cpus")
            mem = sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == "mem")
            if cpus < 0.1 or mem < 32:
                with self.lock:
                    self.pending.insert(0, task)
                driver.declineOffer(offer["id"], dict(refuse_seconds=1))
                continue
            task_id, command, _ = task
            info = dict(
                task_id=dict(value=task_id),
                agent_id=offer["agent_id"],
                name=task_id,
                resources=[scalar("cpus", 0.1), scalar("mem", 32)],
            )
            if command is None:
                info["executor"] = dict(
                    executor_id=dict(value="pyexec-" + task_id),
                    name="pymesos executor",
                    command=dict(shell=True, value="exec " + self.plan.executor),
                    resources=[scalar("cpus", 0.05), scalar("mem", 32)],
                )
                info["data"] = ""
            else:
                info["command"] = command
            logging.info("launching %s on %s", task_id, offer["agent_id"]["value"])
            driver.launchTasks(offer["id"], [info])

    def statusUpdate(self, driver, status):
        task_id = status["task_id"]["value"]
        state = status["state"]
        reason = status.get("reason")
        logging.info("update %s %s %s %s", task_id, state, reason or "", status.get("message", ""))
        if reason == "REASON_RECONCILIATION":
            with self.lock:
                self.reconciled[task_id] = (state, reason)
            self.check_reconciled(driver)
            return
        with self.lock:
            self.seen.setdefault(task_id, []).append(state)
        if task_id not in self.expected:
            self.fail("an update for a task never launched: %s" % task_id)
            return
        if state == "TASK_RUNNING" and task_id.startswith("kill-"):
            driver.killTask(dict(value=task_id))
        if state in ("TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR",
                     "TASK_DROPPED", "TASK_GONE"):
            if state != self.expected[task_id]:
                self.fail("%s ended %s (%s), expected %s" % (
                    task_id, state, status.get("message", ""), self.expected[task_id]))
                return
            with self.lock:
                self.ended[task_id] = state
                all_ended = len(self.ended) == len(self.expected)
            if all_ended and self.phase == "launch":
                self.phase = "reconcile"
                ids = list(self.expected) + [self.plan.ghost]
                logging.info("all tasks ended; reconciling %s", ids)
                driver.reconcileTasks([dict(task_id=dict(value=t)) for t in ids])

    def check_reconciled(self, driver):
        with self.lock:
            if self.phase == "reconcile":
                wanted = list(self.expected) + [self.plan.ghost]
                if not all(t in self.reconciled for t in wanted):
                    return
                for t in self.expected:
                    if self.reconciled[t][0] != self.expected[t]:
                        self.failure = "reconciled %s as %s, expected %s" % (
                            t, self.reconciled[t][0], self.expected[t])
                        self.done.set()
                        return
                ghost = self.reconciled[self.plan.ghost][0]
                if ghost not in ("TASK_LOST", "TASK_UNKNOWN", "TASK_GONE"):
                    self.failure = "a task never launched reconciled as %s" % ghost
                    self.done.set()
                    return
                # Implicit reconciliation: no task is live, so nothing must come back
                # for them as running; the master answers with what it has.
                self.phase = "implicit"
                self.reconciled.clear()
                threading.Timer(0, lambda: driver.reconcileTasks([])).start()
                threading.Timer(3, self.done.set).start()
            elif self.phase == "implicit":
                for t, (state, _) in self.reconciled.items():
                    if state in ("TASK_RUNNING", "TASK_STAGING", "TASK_STARTING"):
                        self.failure = "implicit reconciliation reported %s %s" % (t, state)
                        self.done.set()

    def error(self, driver, message):
        self.fail("error event: %s" % message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("master")
    parser.add_argument("--principal")
    parser.add_argument("--secret")
    parser.add_argument("--executor", help="the command starting executor.py: run one task through it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s framework: %(message)s")

    plan = Plan(args.executor)
    framework = Framework(plan)
    info = dict(user="", name="pymesos-compat", roles=["*"], failover_timeout=60,
                capabilities=[dict(type="MULTI_ROLE")])
    driver = MesosSchedulerDriver(framework, info, args.master, use_addict=False,
                                  principal=args.principal, secret=args.secret)
    driver.start()
    started = time.time()
    if not framework.done.wait(TIMEOUT_S):
        framework.failure = "timed out after %d s: seen %s, ended %s, reconciled %s" % (
            TIMEOUT_S, framework.seen, framework.ended, framework.reconciled)
    driver.stop()
    if framework.failure:
        print("FAIL: " + framework.failure)
        sys.exit(1)
    for task_id, states in framework.seen.items():
        print("%s: %s" % (task_id, " -> ".join(states)))
    print("OK: %d tasks ended as expected, reconciliation answered, in %.1f s" % (
        len(framework.ended), time.time() - started))


if __name__ == "__main__":
    main()
