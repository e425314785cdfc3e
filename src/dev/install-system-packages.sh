#!/usr/bin/env bash
# Installs the Debian packages Roster's demo or test suite needs, only when they are missing.
#   install-system-packages.sh demo   → slapd, ldap-utils
#   install-system-packages.sh test   → slapd, ldap-utils, openssl, chromium, and Samba's AD DC
set -euo pipefail
want=(slapd ldap-utils openssl)
if [ "${1:-test}" = "test" ]; then
  # samba-vfs-modules is only a Recommends of samba, but provisioning a DC needs its acl_xattr module.
  want+=(chromium samba samba-ad-provision samba-dsdb-modules samba-vfs-modules ldb-tools)
fi

missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing missing system packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "Run as root or install sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
