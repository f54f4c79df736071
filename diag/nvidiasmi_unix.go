//go:build unix

package diag

import (
	"os/exec"
	"syscall"
)

// killGroupOnCancel puts the command in its own process group and kills the whole
// group on cancel: nvidia-smi wrappers (and test scripts) fork children that would
// otherwise outlive the kill and keep the output pipes open.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
