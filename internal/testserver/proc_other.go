//go:build !linux

package testserver

import (
	"errors"
	"os/exec"
)

// setProcAttr does nothing outside Linux: the child is killed on cleanup,
// but may outlive a test binary that is itself killed.
func setProcAttr(*exec.Cmd) {}

// killProc kills the child.
func killProc(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

var errNoSignals = errors.New("testserver: freezing a process needs SIGSTOP (Linux)")

func freezeProc(*exec.Cmd) error { return errNoSignals }

func thawProc(*exec.Cmd) error { return errNoSignals }
