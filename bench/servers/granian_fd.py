"""``python -m bench.servers.granian_fd FD``: granian on the port of the listening socket
FD (the harness binds one for every target; granian cannot take a socket, only a port),
which is closed first. The port is free for the instant between the two on loopback."""

import os
import socket
import sys


def main() -> None:
    fd = int(sys.argv[1])
    sock = socket.socket(fileno=fd)
    host, port = sock.getsockname()[:2]
    sock.close()
    argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", host]
    argv += ["--port", str(port), "--workers", "1", "--log-level", "warning"]
    os.execv(sys.executable, [*argv, "bench.servers.tidings_app:application"])


if __name__ == "__main__":
    main()
