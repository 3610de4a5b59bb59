"""``python -m arkor_nb.local.server.serve``: the local server's process entry point."""

from __future__ import annotations

import sys

from arkor_nb.local.server.launch import serve_main

if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))
