#!/usr/bin/env bash
# The Redis tests run against a real redis-server (Debian's package), which the
# jest global setup starts on a free loopback port. Install it when it is missing.
set -euo pipefail
if [ -n "${MST_TEST_REDIS_URL:-}" ] || command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is missing: installing Debian's redis-server package" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  exit 0
fi
echo "redis-server is missing: install it (sudo apt-get install -y redis-server), or set MST_TEST_REDIS_URL=redis://host:port to use a running one." >&2
exit 1
