"""A dashboard server in its own process, for tests that need several: prints its port.

Usage: ``python -m tests.dashboard.receiver_process STORE_URL``; serves until terminated.
"""

from __future__ import annotations

import sys

import waitress

from dashboard.server import create_server
from dashboard.settings import DashboardSettings


def main() -> None:
    settings = DashboardSettings(store_url=sys.argv[1])
    app = create_server(settings)
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=8)
    sys.stdout.write(f"{server.effective_port}\n")
    sys.stdout.flush()
    server.run()


if __name__ == "__main__":
    main()
