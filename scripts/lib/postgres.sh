# shellcheck shell=bash
# scripts/lib/postgres.sh — the PostgreSQL server binaries the Postgres
# store's tests start their throwaway clusters with (tests/support/postgres.rs).
#
#   ensure_postgres_binaries   finds a PostgreSQL server in Debian's layout
#                              (/usr/lib/postgresql/<major>/bin, 15 preferred),
#                              installing Debian's `postgresql` package when
#                              there is none, without starting the packaged
#                              service; exports SESSIOND_PG_BIN; makes sure
#                              `setpriv` (util-linux) is there too.
#
# An SESSIOND_PG_BIN already set and holding `postgres` is kept. Installing
# needs root (or sudo) and Debian's package archive.

# find_postgres_bin: prints the bin directory of the preferred installed
# server, or fails.
find_postgres_bin() {
  if [[ -n ${SESSIOND_PG_BIN:-} && -x $SESSIOND_PG_BIN/postgres ]]; then
    printf '%s\n' "$SESSIOND_PG_BIN"
    return 0
  fi
  if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
    printf '%s\n' /usr/lib/postgresql/15/bin
    return 0
  fi
  # Any other major version: the newest.
  local bin candidate
  candidate=$(
    for bin in /usr/lib/postgresql/*/bin; do
      if [[ -x $bin/postgres ]]; then
        printf '%s\n' "$bin"
      fi
    done | sort -t/ -k5,5 -n | tail -n 1
  )
  [[ -n $candidate ]] || return 1
  printf '%s\n' "$candidate"
}

# as_root COMMAND...: runs COMMAND as root, through sudo when needed.
as_root() {
  if (( EUID == 0 )); then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "postgres.sh: '$*' needs root, and there is no sudo" >&2
    return 1
  fi
}

# apt_install PACKAGE...: installs Debian packages non-interactively, with
# services kept from starting (policy-rc.d answers "not allowed").
apt_install() {
  local policy=/usr/sbin/policy-rc.d added_policy=
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=1
  fi
  local status=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || status=$?
  if (( status == 0 )); then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" || status=$?
  fi
  if [[ -n $added_policy ]]; then
    as_root rm -f "$policy"
  fi
  return "$status"
}

ensure_postgres_binaries() {
  local bin
  if ! bin=$(find_postgres_bin); then
    echo "postgres.sh: no PostgreSQL server found; installing Debian's postgresql"
    apt_install postgresql
    bin=$(find_postgres_bin) || {
      echo "postgres.sh: postgresql installed, but no server binary under /usr/lib/postgresql" >&2
      return 1
    }
  fi
  if ! command -v setpriv >/dev/null 2>&1; then
    echo "postgres.sh: installing util-linux for setpriv"
    apt_install util-linux
  fi
  export SESSIOND_PG_BIN=$bin
  echo "PostgreSQL binaries: $SESSIOND_PG_BIN ($("$SESSIOND_PG_BIN/postgres" --version))"
}
