//go:build !linux

package testenv

import "syscall"

// sysProcAttr: only Linux can tie a child's life to its parent's; Stop still ends them.
func sysProcAttr() *syscall.SysProcAttr { return nil }
