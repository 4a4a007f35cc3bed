// Package procstat reads what the benchmark measures of a server process from
// outside it: its resident memory from /proc, and its goroutine count and
// live connections from the server's GET /debug/goroutines and /debug/conns
// routes.
package procstat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// RSSKiB returns VmRSS of the process, in KiB.
func RSSKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

var client = &http.Client{Timeout: 5 * time.Second}

// Goroutines asks the server at base (http://host:port) for its goroutine
// count. It returns -1 when the server has no such route (the Node server).
func Goroutines(base string) (int, error) { return count(base, "/debug/goroutines") }

// Conns asks the server at base for the number of live WebSocket
// connections its library counts (GET /debug/conns). It returns -1 when the
// server has no such route (libraries that keep no count, the Node server).
func Conns(base string) (int, error) { return count(base, "/debug/conns") }

// count fetches a number served as plain text; -1 when there is none.
func count(base, path string) (int, error) {
	resp, err := client.Get(strings.TrimSuffix(base, "/") + path)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64))
	if err != nil {
		return -1, err
	}
	if resp.StatusCode != http.StatusOK {
		return -1, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1, nil
	}
	return n, nil
}

// HTTPBase turns a ws:// URL into the http:// base of the same host.
func HTTPBase(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return wsURL
	}
	scheme := "http"
	if u.Scheme == "wss" || u.Scheme == "https" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

// clockTick is USER_HZ, the unit of the CPU times in /proc: 100 on Linux.
const clockTick = 100

// CPUSeconds returns the user+system CPU time the process has used, all its
// threads together.
func CPUSeconds(pid int) (float64, error) {
	user, sys, err := CPUTimes(pid)
	return user + sys, err
}

// CPUTimes returns the CPU time the process has used in user space and in
// the kernel on its behalf, all its threads together.
func CPUTimes(pid int) (user, sys float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces; fields after it are plain.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return float64(ut) / clockTick, float64(st) / clockTick, nil
}

// BusySeconds returns the CPU time all processes of the machine have used
// (user, nice, system), plus the time the hypervisor took from it (steal).
// Interrupt time is left out: it is not charged to any process.
func BusySeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat")
	}
	var sum int64
	for _, k := range []int{1, 2, 3, 8} { // user nice system steal
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return float64(sum) / clockTick, nil
}

// LiveBytes asks a Go server at base for its live heap plus goroutine stacks
// after a garbage collection (GET /debug/live). It returns -1 when the
// server has no such route (the Node server).
func LiveBytes(base string) (int64, error) {
	heap, stack, err := Live(base)
	if err != nil || heap < 0 {
		return -1, err
	}
	return heap + stack, nil
}

// Live returns the live heap and the goroutine stacks in use of a Go server
// at base, after a garbage collection (GET /debug/live); -1, -1 when the
// server has no such route.
func Live(base string) (heap, stack int64, err error) {
	resp, err := client.Get(strings.TrimSuffix(base, "/") + "/debug/live")
	if err != nil {
		return -1, -1, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, -1, nil
	}
	var v struct {
		HeapAlloc  int64 `json:"heap_alloc"`
		StackInuse int64 `json:"stack_inuse"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&v); err != nil {
		return -1, -1, nil
	}
	return v.HeapAlloc, v.StackInuse, nil
}

// TCPSockstat reads the TCP line of /proc/net/sockstat: sockets in use and
// the pages of memory the kernel's TCP stack holds (all sockets together).
func TCPSockstat() (inuse, memPages int64, err error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "inuse":
				inuse = v
			case "mem":
				memPages = v
			}
		}
		return inuse, memPages, nil
	}
	return 0, 0, fmt.Errorf("no TCP line in /proc/net/sockstat")
}

// Get fetches base+path and returns the body (up to 64 MiB).
func Get(url string) ([]byte, error) {
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}
