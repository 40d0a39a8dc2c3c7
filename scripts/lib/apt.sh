# Sourced by the test and benchmark scripts: installs Debian packages only when missing, as root,
# with `apt-get update` at most once per run (APT_UPDATED is exported), never starting their daemons.
# apt_install <package>...   need <command> <package>: installs the package if the command is missing.
APT_UPDATED=${APT_UPDATED:-}
export APT_UPDATED

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    printf 'missing Debian packages: %s (run as root, or: apt-get install %s)\n' "${missing[*]}" "${missing[*]}" >&2
    return 1
  fi
  printf 'installing %s\n' "${missing[*]}" >&2
  local policy_created=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # keep the packages' daemons from starting on :80/:9090/:6379
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_created=1
  fi
  local rc=0
  if [[ -z $APT_UPDATED ]]; then apt-get update -qq >/dev/null || rc=$?; APT_UPDATED=1; fi
  ((rc == 0)) && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?; }
  [[ -n $policy_created ]] && rm -f /usr/sbin/policy-rc.d
  if ((rc != 0)); then
    printf 'could not install Debian packages: %s (apt-get exit %s)\n' "${missing[*]}" "$rc" >&2
    return 1
  fi
}

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  apt_install "$2" || return 1
  command -v "$1" >/dev/null 2>&1 || { printf 'missing %s after installing %s\n' "$1" "$2" >&2; return 1; }
}
