#!/usr/bin/env python3
"""A custom Mesos executor on pymesos (0.3.15), unmodified Mesos code for Agora's executor API.

The agent starts it as a task's own executor (Mesos ExecutorInfo{command: "python3
.../executor.py"}) with Mesos' executor environment: pymesos' MesosExecutorDriver reads
MESOS_AGENT_ENDPOINT (host:port, plain HTTP on the agent's loopback listener),
MESOS_FRAMEWORK_ID, MESOS_EXECUTOR_ID, MESOS_CHECKPOINT and
MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD, subscribes to POST /api/v1/executor and calls back here.

For each task it is given (launchTask) it reports TASK_RUNNING, then runs the task: the
task's `data` (base64 of a shell command, as pymesos frameworks commonly pass work) if
there is one, else the task's `command.value`, with /bin/sh -c in the sandbox (a task with
neither has nothing to run and finishes at once). Exit
status 0 is TASK_FINISHED, anything else TASK_FAILED (the message says which); a
killTask sends SIGTERM to the command and reports TASK_KILLED. Once every task it ran has
ended it stops, and the process exits.

Run by hand: the agent sets the environment; no arguments.
"""

import base64
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

from pymesos import MesosExecutorDriver, Executor, encode_data, decode_data

logging.basicConfig(
    level=logging.INFO,
    stream=sys.stderr,
    format="%(asctime)s executor.py %(levelname)s %(message)s",
)
log = logging.getLogger("executor.py")


def status(task_id, state, message=""):
    """A TaskStatus as pymesos sends it (dicts in Mesos' JSON shape)."""
    return {
        "task_id": {"value": task_id},
        "state": state,
        "message": message,
        "timestamp": time.time(),
        "uuid": encode_data(uuid.uuid4().bytes),
        "source": "SOURCE_EXECUTOR",
    }


def send(driver, update, attempts=5):
    """Sends a status update, again (same uuid: the agent takes it once) if the call fails
    (pymesos raises, e.g. when its connection to the agent was closed meanwhile; it opens a
    new one on the next call)."""
    for attempt in range(attempts):
        try:
            driver.sendStatusUpdate(update)
            return
        except Exception as e:
            log.warning("status update %s failed (%s); retrying", update["state"], e)
            time.sleep(0.5 * (attempt + 1))
    log.error("status update %s could not be sent", update["state"])


class ShellExecutor(Executor):
    def __init__(self):
        self.lock = threading.Lock()
        self.running = {}  # task id -> Popen
        self.killed = set()
        self.started = 0
        self.ended = 0

    def registered(self, driver, executor_info, framework_info, agent_info):
        log.info(
            "registered: executor %s of framework %s on agent %s (%s)",
            executor_info["executor_id"]["value"],
            framework_info["id"]["value"],
            agent_info.get("id", {}).get("value", "?"),
            agent_info.get("hostname", "?"),
        )

    def reregistered(self, driver, agent_info):
        log.info("re-registered with agent %s", agent_info.get("id", {}).get("value", "?"))

    def disconnected(self, driver):
        log.info("disconnected from the agent; pymesos reconnects (MESOS_CHECKPOINT)")

    def launchTask(self, driver, task):
        task_id = task["task_id"]["value"]
        command = None
        if task.get("data"):
            try:
                command = decode_data(task["data"]).decode("utf-8")
            except Exception as e:  # not a command: fail the task, saying why
                send(driver,
                    status(task_id, "TASK_FAILED", "data is not a UTF-8 command: %s" % e)
                )
                return
        elif task.get("command", {}).get("value"):
            command = task["command"]["value"]
        if not command:
            # Nothing to run (empty data, no command): the task succeeds at once.
            command = "true"
        with self.lock:
            self.started += 1
        threading.Thread(
            target=self.run, args=(driver, task_id, command), daemon=True
        ).start()

    def run(self, driver, task_id, command):
        sandbox = os.environ.get("MESOS_SANDBOX", os.getcwd())
        try:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=sandbox,
                start_new_session=True,
            )
        except OSError as e:
            send(driver, status(task_id, "TASK_FAILED", "cannot start: %s" % e))
            self.task_ended(driver)
            return
        with self.lock:
            self.running[task_id] = proc
        send(driver, status(task_id, "TASK_RUNNING", "pid %d" % proc.pid))
        code = proc.wait()
        with self.lock:
            self.running.pop(task_id, None)
            killed = task_id in self.killed
        if killed:
            send(driver, status(task_id, "TASK_KILLED", "killed by the framework"))
        elif code == 0:
            send(driver, status(task_id, "TASK_FINISHED", "exit status 0"))
        else:
            send(driver,
                status(task_id, "TASK_FAILED", "exit status %d" % code)
            )
        self.task_ended(driver)

    def task_ended(self, driver):
        with self.lock:
            self.ended += 1
            done = self.ended >= self.started
        if done:
            # Give the agent a moment to acknowledge the last update, then stop.
            threading.Timer(2.0, driver.stop).start()

    def killTask(self, driver, task_id):
        task_id = task_id["value"]
        with self.lock:
            proc = self.running.get(task_id)
            self.killed.add(task_id)
        if proc is None:
            send(driver, status(task_id, "TASK_KILLED", "killed before it ran"))
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def frameworkMessage(self, driver, message):
        log.info("framework message: %r", decode_data(message))

    def shutdown(self, driver):
        log.info("shutdown: killing every task")
        with self.lock:
            procs = list(self.running.items())
            self.killed.update(task_id for task_id, _ in procs)
        for _, proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def error(self, driver, message):
        log.error("error from the agent: %s", message)


def main():
    driver = MesosExecutorDriver(ShellExecutor(), use_addict=False)
    driver.run()


if __name__ == "__main__":
    main()
