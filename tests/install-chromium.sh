#!/usr/bin/env bash
# Install Debian's chromium, the headless browser tests/test_report_page.py renders a run's report.html with (its
# browser part skips without it). Does nothing when /usr/bin/chromium is there. Debian or Ubuntu, as root (or with sudo).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "install-chromium: chromium is installed (/usr/bin/chromium)"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else
  echo "install-chromium: chromium is not installed and this is not root (and there is no sudo): install the chromium package" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
