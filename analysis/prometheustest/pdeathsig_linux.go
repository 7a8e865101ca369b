package prometheustest

import "syscall"

// setPdeathsig makes the kernel SIGTERM Prometheus if the test process dies first.
func setPdeathsig(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGTERM }
