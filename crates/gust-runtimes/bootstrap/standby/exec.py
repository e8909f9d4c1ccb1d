"""Gust's stand-in for a custom runtime started ahead of demand.

It runs in a sandbox of its own before any function is known, waits on the Runtime API for the
environment of the function that adopts the sandbox, and then replaces itself with that
function's `bootstrap`, exactly as a fresh start would run it: same variables, same working
directory, signals at their defaults, no descriptor of its own left open.
"""

import _socket
import json
import os
import signal


def wait_for_adoption(address):
    host, _, port = address.rpartition(":")
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        sock.connect((host, int(port)))
        request = "GET /2018-06-01/runtime/gust/standby HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
        sock.sendall((request % address).encode("ascii"))
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit("gust standby: the Runtime API ended the standby")
    return json.loads(body)


def main():
    adoption = wait_for_adoption(os.environ["AWS_LAMBDA_RUNTIME_API"])
    environment = adoption["Environment"]
    program = adoption["Exec"]["Program"]
    args = adoption["Exec"]["Args"]
    os.chdir(environment.get("LAMBDA_TASK_ROOT") or "/var/task")
    # Python ignores these; a freshly started process has them at their defaults.
    for name in ("SIGPIPE", "SIGXFSZ", "SIGINT"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.execve(program, [program] + args, environment)


main()
