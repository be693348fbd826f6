#!/usr/bin/env bash
# Install the Debian packages named as arguments when a command they provide is missing.
# Needs root for apt-get; without it, say what to install and stop.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# node and npm may come from elsewhere than Debian (nodesource, nvm): accept them as they are.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
pkgs=()
for p in "${missing[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
[ ${#pkgs[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${pkgs[*]}. Install them with: sudo apt-get install ${pkgs[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${pkgs[*]}"
export DEBIAN_FRONTEND=noninteractive
# tor: Blagh starts a tor of its own (or attaches to one the operator set up).  The Debian
# package would start a system tor that joins the public Tor network at once, which development
# machines and CI must never do: keep it from starting (a policy-rc.d that denies, which
# invoke-rc.d and deb-systemd-invoke obey), and disable it.
installing_tor=0
for p in "${pkgs[@]}"; do [ "$p" = tor ] && installing_tor=1; done
if [ "$installing_tor" = 1 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# set by Blagh while installing tor\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
# --no-install-recommends for every package, mat2 above all: its recommendations would pull in a
# desktop's worth of libraries (and a nautilus extension) that the workstation does not need.
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
if [ "$installing_tor" = 1 ] && command -v systemctl >/dev/null; then
  systemctl disable --now tor.service >/dev/null 2>&1 || true
fi
