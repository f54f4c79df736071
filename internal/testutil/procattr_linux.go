package testutil

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes cmd die with the test binary, even one that panics
// before its cleanups run.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
