// Package cli holds what llmgate's subcommands share when reading their flags.
package cli

import (
	"errors"
	"flag"
	"fmt"
)

// ParseFlags parses args with fs and refuses positional arguments. help is true
// when -h or --help printed the usage: the command should then end without an
// error.
func ParseFlags(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return false, nil
}
