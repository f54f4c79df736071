package cli

import (
	"flag"
	"io"
	"testing"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		help    bool
		wantErr bool
	}{
		{[]string{"-n", "3"}, false, false},
		{[]string{"-h"}, true, false},
		{[]string{"--help"}, true, false},
		{[]string{"-n", "x"}, false, true},
		{[]string{"-n", "3", "extra"}, false, true},
		{[]string{"-nope"}, false, true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Int("n", 1, "")
		help, err := ParseFlags(fs, tc.args)
		if help != tc.help || (err != nil) != tc.wantErr {
			t.Errorf("%q: help=%v err=%v", tc.args, help, err)
		}
	}
}
