//go:build !linux

package testserver

import "os/exec"

// setProcAttr does nothing outside Linux: the child is killed on cleanup,
// but may outlive a test binary that is itself killed.
func setProcAttr(*exec.Cmd) {}

// killProc kills the child.
func killProc(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
