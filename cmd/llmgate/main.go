// Command llmgate is Caddy with the llmgate modules built in, plus llmgate's own
// subcommands (sim, demo, ...) registered through Caddy's command registry.
package main

import (
	_ "time/tzdata"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/llmgate/llmgate/caddymodule"
)

func main() { caddycmd.Main() }
