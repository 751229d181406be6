#!/usr/bin/env bash
# Debian packages the tests use for real (headless Chromium for the HTML report, poppler-utils to
# read the PDF Chromium prints of it, Prometheus Alertmanager for paging, Node.js and npm for the
# Node clients of the client matrix, curl),
# installed when missing and when apt-get can install them (CI runs as root on Debian). Elsewhere
# the tests that need them say so and skip. A Node.js from elsewhere (with its own npm) is kept.
set -euo pipefail
# command=package
PACKAGES=(chromium=chromium pdftotext=poppler-utils prometheus-alertmanager=prometheus-alertmanager node=nodejs npm=npm
          curl=curl)
missing=()
for entry in "${PACKAGES[@]}"; do
    command -v "${entry%%=*}" >/dev/null 2>&1 || missing+=("${entry#*=}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-packages: ${missing[*]} missing and apt-get not usable here; the tests needing them will skip" >&2
    exit 0
fi
echo "system-packages: installing ${missing[*]}" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
