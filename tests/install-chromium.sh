#!/usr/bin/env bash
# Install Debian's chromium and chromium-driver, the headless browser the browser tests use: tests/test_report_page.py
# renders a run's report.html with chromium, tests/test_jupyterlab.py drives JupyterLab with it through Selenium and
# chromedriver (both skip without them). Does nothing when both are there. Debian or Ubuntu, as root (or with sudo);
# it needs Debian's package archive (no browser download site). Fails loudly when it cannot install them.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "install-chromium: chromium and chromedriver are installed (/usr/bin/chromium, /usr/bin/chromedriver)"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then sudo=; elif command -v sudo >/dev/null; then sudo=sudo; else
  echo "install-chromium: chromium or chromium-driver is not installed and this is not root (and there is no sudo): install the chromium and chromium-driver packages" >&2
  exit 1
fi
command -v apt-get >/dev/null || { echo "install-chromium: no apt-get: install chromium and its chromedriver with this system's package manager" >&2; exit 1; }

echo "install-chromium: installing the chromium and chromium-driver packages"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# chromium-driver depends on the chromium of its own version, so the two always match
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core
/usr/bin/chromium --version
/usr/bin/chromedriver --version
