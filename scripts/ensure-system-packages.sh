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
# tor, nginx and onionbalance: Blagh starts a tor of its own (or attaches to one the operator set
# up), and the tests start an nginx and an onionbalance of their own (docs/clearnet.md,
# docs/scale.md: the operator enables the system ones).  The Debian packages would start system
# services at once: a tor that joins the public Tor network, which development machines and CI
# must never do, an nginx listening on port 80 of every interface, and an onionbalance that
# talks to the system tor (its unit waits only for /etc/onionbalance/config.yaml).  Keep them from starting (a policy-rc.d that denies, which invoke-rc.d and
# deb-systemd-invoke obey), and disable them.
services=()
for p in "${pkgs[@]}"; do
  case "$p" in tor|nginx|onionbalance) services+=("$p") ;; esac
done
if [ ${#services[@]} -gt 0 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# set by Blagh while installing %s\nexit 101\n' "${services[*]}" > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
# --no-install-recommends for every package, mat2 above all: its recommendations would pull in a
# desktop's worth of libraries (and a nautilus extension) that the workstation does not need.
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
if [ ${#services[@]} -gt 0 ] && command -v systemctl >/dev/null; then
  for service in "${services[@]}"; do
    systemctl disable --now "$service.service" >/dev/null 2>&1 || true
  done
  # A production server set up with [tor] mode = attach needs Debian's tor at boot: say so, once.
  case " ${services[*]} " in *" tor "*)
    echo "Note: tor.service is disabled (a development machine must not join the Tor network)." >&2
    echo "On a server with [tor] mode = attach, run: systemctl enable --now tor" \
      "(docs/admin/services.md)." >&2 ;;
  esac
fi
