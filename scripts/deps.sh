#!/usr/bin/env bash
# Checks the system packages Switchboard needs and installs the missing ones when it can (root + apt-get).
# Usage: scripts/deps.sh PACKAGE...   Exits non-zero, naming what is missing, when it cannot install them.
set -euo pipefail

missing=()
for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "switchboard: missing system packages: ${missing[*]}" >&2
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        sudo=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo"
    else
        echo "switchboard: install them with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "switchboard: installing ${missing[*]} with apt-get" >&2
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "switchboard: installed ${missing[*]}" >&2
else
    echo "switchboard: no apt-get here; install the equivalents of: ${missing[*]}" >&2
    exit 1
fi
