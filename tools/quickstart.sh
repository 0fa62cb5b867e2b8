#!/usr/bin/env bash
# Start a whole clouddisco on this machine and show a router surviving the loss
# of the node that hosts it. Run as root on Debian 12:
#
#   sudo tools/quickstart.sh                 # demonstrate, then stop everything
#   sudo tools/quickstart.sh --keep-running  # leave it up until Ctrl-C
#   sudo tools/quickstart.sh --ha            # the HA topology; a Galera and a
#                                            # RabbitMQ node killed while pinging
#
# Installs what is missing first (Debian packages, MariaDB, RabbitMQ, .venv).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [ "$(id -u)" -ne 0 ]; then
    echo "quickstart: run as root (it creates network namespaces and a bridge)" >&2
    exit 1
fi
tools/setup-env.sh
exec .venv/bin/python -m tools.quickstart "$@"
