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
        request = "GET /2018-06-01/runtime/gust/standby HTTP/1.1\r\nHost: %s\r\n\r\n"
        sock.sendall((request % address).encode("ascii"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("gust standby: the Runtime API closed the connection")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        # Read exactly the body: waiting for the server to close costs a round of scheduling.
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    finally:
        sock.close()
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
