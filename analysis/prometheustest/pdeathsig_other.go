//go:build !linux

package prometheustest

import "syscall"

func setPdeathsig(*syscall.SysProcAttr) {}
