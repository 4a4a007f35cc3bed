package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Syscalls is what the server asked of the kernel per round trip (echo) or
// per upgrade, counted by perf on the syscalls tracepoints during a run of
// its own: where most of the CPU time of a message goes on loopback, and
// the floor no library goes below.
type Syscalls struct {
	Read  float64 `json:"read"`  // read, readv, recvfrom, recvmsg
	Write float64 `json:"write"` // write, writev, sendto, sendmsg
	Poll  float64 `json:"poll"`  // epoll_wait, epoll_pwait, epoll_pwait2
	Total float64 `json:"total"` // every system call
	Ops   int64   `json:"ops"`   // round trips or upgrades counted over
}

var (
	syscallsRead  = []string{"read", "readv", "recvfrom", "recvmsg"}
	syscallsWrite = []string{"write", "writev", "sendto", "sendmsg"}
	syscallsPoll  = []string{"epoll_wait", "epoll_pwait", "epoll_pwait2"}
)

// syscallRun is how long each counting run lasts: long enough for
// thousands of round trips, short against the measured runs.
const syscallRun = 2 * time.Second

// perfEvents is the -e list: the tracepoints of every call above that
// this kernel has, and raw_syscalls:sys_enter for the total. Empty when
// perf cannot count them here (not installed, or not allowed).
func perfEvents() string {
	if _, err := exec.LookPath("perf"); err != nil {
		return ""
	}
	has := func(name string) bool {
		for _, dir := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
			if _, err := os.Stat(dir + "/events/syscalls/sys_enter_" + name); err == nil {
				return true
			}
		}
		return false
	}
	var events []string
	for _, group := range [][]string{syscallsRead, syscallsWrite, syscallsPoll} {
		for _, name := range group {
			if has(name) {
				events = append(events, "syscalls:sys_enter_"+name)
			}
		}
	}
	if len(events) == 0 {
		return ""
	}
	list := strings.Join(append(events, "raw_syscalls:sys_enter"), ",")
	if exec.Command("perf", "stat", "-x,", "-e", list, "--", "true").Run() != nil {
		return ""
	}
	return list
}

// countSyscalls runs the load generator with args for syscallRun while
// perf counts the server's system calls, and divides by the round trips
// or upgrades of that run. It is a run of its own because tracing makes
// every system call of the server a little dearer.
func countSyscalls(o options, s *server, args ...string) (*Syscalls, error) {
	out := filepath.Join(o.outDir, "logs", fmt.Sprintf("perf-%s-%d.csv", s.lib, time.Now().UnixNano()))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	defer os.Remove(out)
	perf := exec.Command("perf", "stat", "-x,", "-o", out, "-e", o.perfEvents, "-p", strconv.Itoa(s.pid))
	var stderr bytes.Buffer
	perf.Stderr = &stderr
	if err := perf.Start(); err != nil {
		return nil, fmt.Errorf("perf: %w", err)
	}
	time.Sleep(300 * time.Millisecond) // attached before the first connection
	res, _, loadErr := runLoad(o, s, append(args, "-duration", syscallRun.String())...)
	perf.Process.Signal(syscall.SIGINT)
	perfErr := perf.Wait()
	if loadErr != nil {
		return nil, loadErr
	}
	csv, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("perf: %v: %s", perfErr, strings.TrimSpace(stderr.String()))
	}
	counts := parsePerfCSV(csv)
	ops := res.AllMessages + res.AllUpgrades
	if ops == 0 || counts["raw_syscalls:sys_enter"] == 0 {
		return nil, fmt.Errorf("perf counted nothing (%d operations): %s", ops, strings.TrimSpace(stderr.String()))
	}
	sum := func(names []string) float64 {
		var n float64
		for _, name := range names {
			n += counts["syscalls:sys_enter_"+name]
		}
		return n / float64(ops)
	}
	return &Syscalls{
		Read:  sum(syscallsRead),
		Write: sum(syscallsWrite),
		Poll:  sum(syscallsPoll),
		Total: counts["raw_syscalls:sys_enter"] / float64(ops),
		Ops:   ops,
	}, nil
}

// countInto counts the system calls of one scenario and records them; a
// failure is logged, not fatal: the table is a help to read the others.
func countInto(o options, s *server, rep *Report, name, lib string, args ...string) {
	c, err := countSyscalls(o, s, args...)
	if err != nil {
		logf("   system calls, %s: %v", name, err)
		return
	}
	logf("   system calls per op, %s: read / write / poll / other %s", name, fmtSyscalls(c))
	rep.addSyscalls(name, lib, c)
}

// parsePerfCSV reads perf stat -x, output: value,unit,event,... per line.
func parsePerfCSV(b []byte) map[string]float64 {
	counts := map[string]float64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			counts[f[2]] += v
		}
	}
	return counts
}

// fmtSyscalls is one cell of the system call table.
func fmtSyscalls(c *Syscalls) string {
	if c == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f", c.Read, c.Write, c.Poll, c.Total-c.Read-c.Write-c.Poll)
}

// syscallMarkdown is the system call section of results.md: per library,
// read / write / epoll wait / other calls per round trip, by scenario, and
// per upgrade.
func syscallMarkdown(r *Report, p func(string, ...any)) {
	var names []string
	for _, sc := range r.Echo {
		if r.Syscalls[sc.Name] != nil {
			names = append(names, sc.Name)
		}
	}
	if r.Syscalls["upgrade"] != nil {
		names = append(names, "upgrade")
	}
	if len(names) == 0 {
		return
	}
	p("## System calls\n\n")
	p("What the server asked of the kernel per round trip (per upgrade in the last column): reads / writes / epoll waits / all other calls, ")
	p("counted by `perf stat` on the syscall tracepoints during a %s run of each scenario of its own in the first round ", syscallRun)
	p("(tracing makes every call dearer, so the measured runs go without it). ")
	p("On loopback a write also runs the receiving side's TCP path, and most of a message's CPU time is in these calls: ")
	p("one read and one write per round trip is the floor, and a second read per message is the read that finds nothing (EAGAIN) before a goroutine waits for the socket.\n\n")
	libTable(p, r.Libs, names, func(lib string, i int) string {
		return fmtSyscalls(r.Syscalls[names[i]][lib])
	})
}

// libTable writes a Markdown table with a row per library and a column
// per name, right-aligned, each cell from cell.
func libTable(p func(string, ...any), libs, names []string, cell func(lib string, col int) string) {
	p("| library |")
	for _, n := range names {
		p(" %s |", n)
	}
	p("\n|---|")
	for range names {
		p("---:|")
	}
	p("\n")
	for _, lib := range libs {
		p("| %s |", lib)
		for i := range names {
			p(" %s |", cell(lib, i))
		}
		p("\n")
	}
	p("\n")
}
