#!/usr/bin/env bash
# The browser client's tests on a fresh Debian machine (run as root; CI runs it through
# scripts/test.sh): installs Chromium and the npm packages when missing, then runs the type-check,
# the unit tests, the browser-build drift and size checks, and the end-to-end tests in headless
# Chromium against the gateway binary in GATEWAY_BIN (default target/debug/client-telemetry).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive CI=${CI:-true} NO_COLOR=1

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "test-client.sh: $*" >&2; exit 1; }

# Node.js >= 20.19 (Vite 7); Debian's own nodejs is older, so it is not installed from there.
command -v node >/dev/null && command -v npm >/dev/null || fail "missing: node and npm (Node.js >= 20.19)"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
  || fail "Node.js >= 20.19 is needed, found $(node --version)"

if [[ ! -x /usr/bin/chromium ]]; then
  step "installing Debian's chromium (for the end-to-end tests)"
  [[ $(id -u) -eq 0 ]] || fail "missing: /usr/bin/chromium (apt package chromium); run as root or install it"
  apt-get update -qq </dev/null || fail "apt-get update failed: cannot install chromium"
  apt-get install -y -qq chromium </dev/null >/dev/null || fail "could not install the apt package chromium"
fi

gateway_bin=$(realpath -m "${GATEWAY_BIN:-target/debug/client-telemetry}")
[[ -x $gateway_bin ]] || fail "no gateway binary at $gateway_bin: run \`cargo build\` first (scripts/test.sh does) or set GATEWAY_BIN"
export GATEWAY_BIN=$gateway_bin

cd client
# npm ci only when node_modules is not what package-lock.json describes.
if ! cmp -s package-lock.json node_modules/.ci-lock 2>/dev/null; then
  step "npm ci (client/)"
  npm ci --no-audit --no-fund </dev/null || fail "npm ci failed in client/ (is the npm registry reachable?)"
  cp package-lock.json node_modules/.ci-lock
fi

step "client: type-check, unit tests, browser build up to date, size"
npm test --silent </dev/null
step "client: end-to-end in headless Chromium against $GATEWAY_BIN"
npm run --silent test:e2e </dev/null
step "client tests passed"
