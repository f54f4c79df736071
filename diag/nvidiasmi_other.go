//go:build !unix

package diag

import "os/exec"

// killGroupOnCancel keeps exec's default cancel (kill the process itself) where
// there are no Unix process groups.
func killGroupOnCancel(cmd *exec.Cmd) {}
