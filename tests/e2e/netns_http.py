"""HTTP requests from inside a container's network namespace: the test runs this file with
`nsenter --net=/proc/PID/ns/net` (the container's loopback is reachable only from there).

`python netns_http.py PORT` reads a JSON list of requests ([method, path, body]) on stdin, sends them
all at once (one thread each) and prints a JSON list of [status, body] (status 0 and the error text
when a request failed).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Request = tuple[str, str, str]
Response = tuple[int, str]


def requests_in_netns(pid: int, port: int, requests: list[Request], timeout: float = 60.0) -> list[Response]:
    """Send `requests` concurrently to 127.0.0.1:`port` in the network namespace of process `pid`."""
    proc = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, __file__, str(port)],
        input=json.dumps(requests), capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"client in the netns of {pid} failed ({proc.returncode}): {proc.stderr}")
    return [(status, body) for status, body in json.loads(proc.stdout)]


def start_in_netns(pid: int, port: int, requests: list[Request]) -> subprocess.Popen[str]:
    """The same, not waited for: `finish(proc)` gives the responses."""
    proc = subprocess.Popen(
        ["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, __file__, str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(requests))
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 60.0) -> list[Response]:
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    if proc.wait(timeout) != 0:
        raise AssertionError(f"client failed ({proc.returncode}): {err}")
    return [(status, body) for status, body in json.loads(out)]


def _send(port: int, request: list[Any]) -> Response:
    method, path, body = request
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, body=body.encode() if body else None)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as exc:
        return 0, f"{type(exc).__name__}: {exc}"


def main() -> int:
    port = int(sys.argv[1])
    requests = json.load(sys.stdin)
    with ThreadPoolExecutor(max_workers=max(1, len(requests))) as pool:
        results = list(pool.map(lambda r: _send(port, r), requests))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
