#!/usr/bin/env python3
# A Mesos executor speaking Mesos' v1 executor HTTP API by hand (Python's standard library
# only: no Mesos library, not our driver), for agent/tests/mesos_executor.rs.
#
# It writes its environment to executor_env.txt and every event it sees to events.log in
# its sandbox, subscribes (JSON, no Authorization header: the agent identifies it by its
# cgroup; with MESOS_TEST_USE_TOKEN=1 it sends its token instead), and for each LAUNCH
# sends TASK_RUNNING, then TASK_FINISHED unless the task's data is "wait-kill" (then it
# waits for KILL and sends TASK_KILLED). It exits once its terminal update is
# ACKNOWLEDGED. When the stream ends (agent restart), it subscribes again every 0.3 s,
# naming its unacknowledged tasks and updates.
import base64
import json
import os
import socket
import sys
import time
import uuid

env = os.environ
endpoint = env["MESOS_AGENT_ENDPOINT"]
host, port = endpoint.split(":")
fw = env["MESOS_FRAMEWORK_ID"]
ex = env["MESOS_EXECUTOR_ID"]
sandbox = env["MESOS_SANDBOX"]
log = open(os.path.join(sandbox, "events.log"), "a", buffering=1)
with open(os.path.join(sandbox, "executor_env.txt"), "w") as f:
    for k, v in sorted(env.items()):
        f.write("%s=%s\n" % (k, v))


def request(body):
    s = socket.create_connection((host, int(port)), timeout=60)
    data = json.dumps(body).encode()
    auth = b""
    if env.get("MESOS_TEST_USE_TOKEN") == "1":
        auth = b"Authorization: Bearer " + env["MESOS_EXECUTOR_AUTHENTICATION_TOKEN"].encode() + b"\r\n"
    s.sendall(
        b"POST /api/v1/executor HTTP/1.1\r\nHost: " + endpoint.encode()
        + b"\r\nContent-Type: application/json\r\nAccept: application/json\r\n" + auth
        + b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data
    )
    f = s.makefile("rb")
    code = int(f.readline().split()[1])
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, v = line.decode().split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return code, headers, f, s


def chunks(f):
    while True:
        line = f.readline()
        if not line:
            return  # the connection closed (the agent went away)
        size = int(line.strip(), 16)
        if size == 0:
            return
        data = f.read(size)
        f.read(2)
        yield data


def records(f):
    buf = b""
    for chunk in chunks(f):
        buf += chunk
        while b"\n" in buf:
            n, rest = buf.split(b"\n", 1)
            n = int(n)
            if len(rest) < n:
                break
            yield json.loads(rest[:n])
            buf = rest[n:]


def call(kind, **members):
    body = {"type": kind, "framework_id": {"value": fw}, "executor_id": {"value": ex}}
    body.update(members)
    code, headers, f, s = request(body)
    n = int(headers.get("content-length", "0"))
    text = f.read(n) if n else b""
    s.close()
    return code, text


tasks = {}
unacked = {}
terminal = set()


def update(task_id, state, message=""):
    u = {
        "task_id": {"value": task_id},
        "state": state,
        "message": message,
        "uuid": base64.b64encode(uuid.uuid4().bytes).decode(),
        "source": "SOURCE_EXECUTOR",
        "timestamp": time.time(),
    }
    unacked[u["uuid"]] = u
    code, text = call("UPDATE", update={"status": u})
    log.write("UPDATE %s %s %s\n" % (state, code, text.decode(errors="replace")))
    if state in ("TASK_FINISHED", "TASK_KILLED", "TASK_FAILED"):
        terminal.add(u["uuid"])


while True:
    try:
        code, headers, f, s = request({
            "type": "SUBSCRIBE",
            "framework_id": {"value": fw},
            "executor_id": {"value": ex},
            "subscribe": {
                "unacknowledged_tasks": list(tasks.values()),
                "unacknowledged_updates": [{"status": u} for u in unacked.values()],
            },
        })
        log.write("SUBSCRIBE %s stream=%s chunked=%s\n" % (
            code, headers.get("mesos-stream-id", ""), headers.get("transfer-encoding", "")))
        if code != 200:
            raise Exception("subscribe answered %s" % code)
        for event in records(f):
            kind = event["type"]
            if kind == "SUBSCRIBED":
                sub = event["subscribed"]
                log.write("SUBSCRIBED executor=%s framework=%s agent=%s container=%s\n" % (
                    sub["executor_info"]["executor_id"]["value"],
                    sub["framework_info"]["id"]["value"],
                    sub["agent_info"]["id"]["value"],
                    sub.get("container_id", {}).get("value", "")))
            elif kind == "LAUNCH":
                task = event["launch"]["task"]
                tid = task["task_id"]["value"]
                tasks[tid] = task
                data = base64.b64decode(task.get("data", "")).decode()
                log.write("LAUNCH %s data=%s agent=%s\n" % (tid, data, task["agent_id"]["value"]))
                update(tid, "TASK_RUNNING", "running")
                if data != "wait-kill":
                    update(tid, "TASK_FINISHED", "done")
            elif kind == "ACKNOWLEDGED":
                a = event["acknowledged"]
                u = a["uuid"]
                log.write("ACKNOWLEDGED %s %s\n" % (a["task_id"]["value"], unacked.get(u, {}).get("state", "?")))
                unacked.pop(u, None)
                if u in terminal:
                    log.write("EXIT\n")
                    sys.exit(0)
            elif kind == "KILL":
                tid = event["kill"]["task_id"]["value"]
                log.write("KILL %s\n" % tid)
                update(tid, "TASK_KILLED", "killed by the framework")
            elif kind == "SHUTDOWN":
                log.write("SHUTDOWN\n")
                sys.exit(0)
            else:
                log.write(kind + "\n")
        log.write("STREAM ENDED\n")
    except SystemExit:
        raise
    except Exception as e:
        log.write("DISCONNECTED %s\n" % e)
    time.sleep(0.3)
