// Package llmgate is the import that plugs llmgate's Caddy modules into a Caddy
// build: `xcaddy build --with github.com/llmgate/llmgate` (see xcaddy.sh).
package llmgate

import _ "github.com/llmgate/llmgate/caddymodule"
