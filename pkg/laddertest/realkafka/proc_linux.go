package realkafka

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL the child when the thread that
// started it exits: a test binary that dies (a panic, a timeout) takes its
// brokers with it. The caller keeps that thread (runtime.LockOSThread) for
// as long as the child runs.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// commandLine is the command line of process pid, arguments joined by
// spaces ("" when it cannot be read).
func commandLine(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}
