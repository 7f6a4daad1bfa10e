#!/usr/bin/env bash
# Install the Debian packages the tests use (Dovecot, swaks, PostgreSQL 15),
# idempotently: a dpkg-query look-up when everything is there already (~10 ms).
set -euo pipefail
pkgs=(dovecot-imapd dovecot-lmtpd swaks libnet-ssleay-perl postgresql-15 openssl)
missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [ "${status:0:2}" = "ii" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "system-deps: missing ${missing[*]}; run as root or install them with apt-get" >&2
    exit 1
fi
# Packages must not start system services on install (they would listen on
# every interface): a temporary policy-rc.d that denies starts, when none exists.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
fi
trap '[ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
echo "system-deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
