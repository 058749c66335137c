//go:build !linux

package main

import (
	"errors"
	"time"
)

var errNoCPU = errors.New("CPU accounting needs Linux")

// selfCPU is not implemented outside Linux: the CPU columns stay empty.
func selfCPU() (time.Duration, error) { return 0, errNoCPU }

// processCPU is not implemented outside Linux.
func processCPU(int) (time.Duration, error) { return 0, errNoCPU }

// processName is not implemented outside Linux.
func processName(int) string { return "" }
