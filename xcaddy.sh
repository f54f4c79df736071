#!/usr/bin/env bash
# Builds stock Caddy with the llmgate modules through xcaddy, taking the plugin from
# this checkout. Usage: ./xcaddy.sh [output-path]   (default: ./caddy)
set -euo pipefail
cd "$(dirname "$0")"

CADDY_VERSION=${CADDY_VERSION:-v2.11.9}
XCADDY_VERSION=${XCADDY_VERSION:-v0.4.5}
out=${1:-./caddy}

# xcaddy `go get`s the plugin's module path even for a local replacement, and the
# module proxy refuses an unpublished path. Ending GOPROXY with "|off" turns that
# refusal into "not found", so the local replacement wins.
GOPROXY="$(go env GOPROXY | sed 's/,direct$//')|off"
export GOPROXY

if ! command -v xcaddy >/dev/null 2>&1; then
	GOPROXY="$(go env GOPROXY | sed 's/|off$//')" go install "github.com/caddyserver/xcaddy/cmd/xcaddy@${XCADDY_VERSION}"
	PATH="$(go env GOPATH)/bin:$PATH"
fi

xcaddy build "$CADDY_VERSION" --output "$out" --with "github.com/llmgate/llmgate=."
"$out" list-modules --skip-standard
