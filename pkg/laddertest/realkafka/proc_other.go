//go:build !linux

package realkafka

import "syscall"

// dieWithParent is a no-op where the kernel cannot tie a child's life to
// its parent: Stop (and the sweep of stale directories) must end it.
func dieWithParent(*syscall.SysProcAttr) {}

// commandLine is not known on this system.
func commandLine(int) string { return "" }
