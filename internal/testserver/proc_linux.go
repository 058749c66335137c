//go:build linux

package testserver

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the child in its own process group and has the kernel
// kill it when the thread that started it (and so the test binary) dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killProc sends SIGKILL to the child's process group.
func killProc(cmd *exec.Cmd) {
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = cmd.Process.Kill()
	}
}

// signalProc sends sig to the child's process group.
func signalProc(cmd *exec.Cmd, sig syscall.Signal) error {
	return syscall.Kill(-cmd.Process.Pid, sig)
}

// freezeProc stops the child (SIGSTOP): it keeps its sockets and memory,
// and answers nothing until thawProc.
func freezeProc(cmd *exec.Cmd) error { return signalProc(cmd, syscall.SIGSTOP) }

// thawProc resumes a frozen child (SIGCONT).
func thawProc(cmd *exec.Cmd) error { return signalProc(cmd, syscall.SIGCONT) }
