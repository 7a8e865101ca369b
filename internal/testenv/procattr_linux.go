package testenv

import "syscall"

// sysProcAttr makes a component die with the process that started it, so a test binary
// killed by a timeout does not leave a scheduler and fake nodes behind. (Linux ties it to the
// starting thread, which the Go runtime keeps alive unless a goroutine locked to it exits.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
