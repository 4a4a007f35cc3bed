package main

// The scale mode (BENCH_SCALE=N): N idle connections at once, more than one
// process can hold (the open-file limit is 20000 per process here), so spread
// over several server processes of the same library, each on its own
// 127.0.0.x address, each with its own load process dialing from its own
// range of source addresses. It reports the servers' total RSS per
// connection, goroutines per connection, how long the connections took to
// open, checks that every server holds its share (the library's count of
// its connections where it keeps one, goroutine counts otherwise), and
// that SIGTERM closes every connection cleanly (-graceful: a close frame with
// 1001 to each, counted by the load processes).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ginws/ginws/bench/internal/procstat"
)

// ScaleServer is one server process of a scale run and its load process.
type ScaleServer struct {
	Addr              string         `json:"addr"`
	SrcAddrs          string         `json:"src_addrs"`
	Conns             int            `json:"conns"`
	Connected         int            `json:"connected"`
	Errors            int64          `json:"errors"`
	DialSeconds       float64        `json:"dial_seconds"`
	RSSBeforeKiB      int64          `json:"rss_before_kib"`
	RSSAfterKiB       int64          `json:"rss_after_kib"`
	GoroutinesBefore  int            `json:"goroutines_before"`
	GoroutinesAfter   int            `json:"goroutines_after"`
	HeapBefore        int64          `json:"heap_before"`
	HeapAfter         int64          `json:"heap_after"`
	StackBefore       int64          `json:"stack_before"`
	StackAfter        int64          `json:"stack_after"`
	ShutdownLine      string         `json:"shutdown_line"`
	ExitCode          int            `json:"exit_code"`
	CloseCodes        map[int]int    `json:"close_codes"`
	NoCloseFrame      int            `json:"no_close_frame"`
	NoCloseReasons    map[string]int `json:"no_close_reasons,omitempty"`
	StillOpen         int            `json:"still_open"`
	LastCloseAfterSec float64        `json:"last_close_after_sigterm_seconds"` // seen by the client
	// LibConnsBefore and LibConnsAfter are the live connections the library
	// counts (/debug/conns: ginws, ginws-events), -1 for the others.
	LibConnsBefore int `json:"lib_conns_before"`
	LibConnsAfter  int `json:"lib_conns_after"`
}

// ScaleResult is one library's scale run.
type ScaleResult struct {
	Lib        string         `json:"lib"`
	Target     int            `json:"target"`
	Servers    []*ScaleServer `json:"servers"`
	Connected  int            `json:"connected"`
	Errors     int64          `json:"errors"`
	FirstError string         `json:"first_error,omitempty"`
	// OpenSeconds is from starting the load processes to the last of them
	// reporting all its connections open.
	OpenSeconds       float64 `json:"open_seconds"`
	RSSBeforeKiB      int64   `json:"rss_before_kib"`
	RSSAfterKiB       int64   `json:"rss_after_kib"`
	RSSPerConnKiB     float64 `json:"rss_per_conn_kib"`
	HeapPerConnKiB    float64 `json:"heap_per_conn_kib"`
	StackPerConnKiB   float64 `json:"stack_per_conn_kib"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	// HeldAll: every server's count of its connections (/debug/conns), or
	// for a library that keeps none its goroutine count, grew by at least
	// the connections its load process opened.
	HeldAll bool `json:"held_all"`
	// Kernel: TCP sockets in use and TCP memory (pages of 4 KiB) from
	// /proc/net/sockstat, before, while held and after the shutdown.
	TCPInuse   [3]int64 `json:"tcp_inuse"`
	TCPMemPage [3]int64 `json:"tcp_mem_pages"`
	// CPU while opening.
	ServerCPUSeconds float64 `json:"server_cpu_seconds"`
	LoadCPUSeconds   float64 `json:"load_cpu_seconds"`
	BackgroundCPUs   float64 `json:"background_cpus"`
	// Shutdown: SIGTERM to every server at once.
	ShutdownSeconds float64        `json:"shutdown_seconds"`
	CloseCodes      map[int]int    `json:"close_codes"`
	NoCloseFrame    int            `json:"no_close_frame"`
	NoCloseReasons  map[string]int `json:"no_close_reasons,omitempty"`
	// ShutdownBackgroundCPUs is what other processes used during it.
	ShutdownBackgroundCPUs float64 `json:"shutdown_background_cpus"`
	StillOpen              int     `json:"still_open"`
	CleanExits             int     `json:"clean_exits"`
	Error                  string  `json:"error,omitempty"`
}

// ScaleReport is scale.json.
type ScaleReport struct {
	Started     time.Time      `json:"started"`
	WallSeconds float64        `json:"wall_seconds"`
	Env         []KV           `json:"env"`
	Target      int            `json:"target"`
	PerServer   int            `json:"per_server"`
	Libs        []string       `json:"libs"`
	Results     []*ScaleResult `json:"results"`
	Failures    []string       `json:"failures"`
}

func runScale(o options) {
	rep := &ScaleReport{Started: time.Now(), Env: describeEnv(o), Target: o.scale, PerServer: o.scalePerServer, Libs: o.libs}
	for _, lib := range o.libs {
		logf("== %s: %d idle connections", lib, o.scale)
		res, err := runScaleLib(o, lib)
		if err != nil {
			res.Error = err.Error()
			rep.Failures = append(rep.Failures, lib+": "+err.Error())
			logf("FAIL %s: %v", lib, err)
		}
		rep.Results = append(rep.Results, res)
	}
	rep.WallSeconds = time.Since(rep.Started).Seconds()
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(filepath.Join(o.outDir, "scale.json"), append(js, '\n'), 0o644); err != nil {
		fail("%v", err)
	}
	if err := os.WriteFile(filepath.Join(o.outDir, "scale.md"), []byte(scaleMarkdown(o, rep)), 0o644); err != nil {
		fail("%v", err)
	}
	logf("wrote %s", filepath.Join(o.outDir, "scale.md"))
	if len(rep.Failures) > 0 {
		os.Exit(1)
	}
}

type scaleLoad struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	errb  strings.Builder
}

func runScaleLib(o options, lib string) (*ScaleResult, error) {
	n := o.scale
	k := (n + o.scalePerServer - 1) / o.scalePerServer
	res := &ScaleResult{Lib: lib, Target: n, CloseCodes: map[int]int{}, NoCloseReasons: map[string]int{}}

	// Servers.
	var srvs []*server
	defer func() {
		for _, s := range srvs {
			s.stop()
		}
	}()
	for i := 0; i < k; i++ {
		share := n / k
		if i < n%k {
			share++
		}
		s, err := startServerAt(o, lib, fmt.Sprintf("scale-%d", i+1), fmt.Sprintf("127.0.0.%d:0", 11+i), "-graceful")
		if err != nil {
			return res, fmt.Errorf("server %d: %w", i+1, err)
		}
		srvs = append(srvs, s)
		res.Servers = append(res.Servers, &ScaleServer{Addr: s.addr, Conns: share,
			SrcAddrs: fmt.Sprintf("%d from 127.%d.0.1", o.scaleSrcIPs, 20+i)})
	}
	for i, s := range srvs {
		ss := res.Servers[i]
		var err error
		if ss.RSSBeforeKiB, err = procstat.RSSKiB(s.pid); err != nil {
			return res, err
		}
		ss.GoroutinesBefore, _ = procstat.Goroutines(s.base())
		ss.LibConnsBefore, _ = procstat.Conns(s.base())
		ss.HeapBefore, ss.StackBefore, _ = procstat.Live(s.base())
		res.RSSBeforeKiB += ss.RSSBeforeKiB
	}
	res.TCPInuse[0], res.TCPMemPage[0], _ = procstat.TCPSockstat()

	// Load processes, one per server.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var loads []*scaleLoad
	defer func() {
		for _, l := range loads {
			l.stdin.Close()
		}
		for _, l := range loads {
			l.cmd.Wait()
		}
	}()
	busy0, _ := procstat.BusySeconds()
	var srvCPU0 float64
	for _, s := range srvs {
		c, _ := procstat.CPUSeconds(s.pid)
		srvCPU0 += c
	}
	t0 := time.Now()
	for i, s := range srvs {
		ss := res.Servers[i]
		l := &scaleLoad{}
		l.cmd = loadCommand(ctx, o, "-url", s.url(), "-mode", "idle", "-conns", strconv.Itoa(ss.Conns),
			"-wait-stdin", "-settle", "0s", "-parallel", "32",
			"-src-base", fmt.Sprintf("127.%d.0.1", 20+i), "-src-ips", strconv.Itoa(o.scaleSrcIPs),
			"-watch-close", "3m", "-timeout", "19m")
		l.cmd.Stderr = &l.errb
		var err error
		if l.stdin, err = l.cmd.StdinPipe(); err != nil {
			return res, err
		}
		stdout, err := l.cmd.StdoutPipe()
		if err != nil {
			return res, err
		}
		l.out = bufio.NewReader(stdout)
		if err := l.cmd.Start(); err != nil {
			return res, err
		}
		loads = append(loads, l)
	}
	var loadCPU float64
	for i, l := range loads {
		var r LoadResult
		if err := readLine(l, &r); err != nil {
			return res, fmt.Errorf("load %d: %w", i+1, err)
		}
		// CPU of the generator so far, while it still runs.
		c, _ := procstat.CPUSeconds(l.cmd.Process.Pid)
		loadCPU += c
		ss := res.Servers[i]
		ss.Connected, ss.Errors, ss.DialSeconds = r.Connected, r.Errors, r.DialSeconds
		res.Connected += r.Connected
		res.Errors += r.Errors
		if r.FirstError != "" && res.FirstError == "" {
			res.FirstError = r.FirstError
		}
	}
	res.OpenSeconds = time.Since(t0).Seconds()
	busy1, _ := procstat.BusySeconds()
	var srvCPU1 float64
	for _, s := range srvs {
		c, _ := procstat.CPUSeconds(s.pid)
		srvCPU1 += c
	}
	res.ServerCPUSeconds, res.LoadCPUSeconds = srvCPU1-srvCPU0, loadCPU
	res.BackgroundCPUs = max(0, (busy1-busy0)-res.ServerCPUSeconds-loadCPU) / res.OpenSeconds
	logf("   %d of %d connections open in %.1f s (%.0f/s)%s", res.Connected, n, res.OpenSeconds,
		float64(res.Connected)/res.OpenSeconds, noiseNote(o, Run{BackgroundCPUs: res.BackgroundCPUs}))

	// Measure while they are all held, as the idle test does.
	time.Sleep(time.Second)
	for i, s := range srvs {
		if !s.alive() {
			return res, fmt.Errorf("server %s died holding its connections (see %s)", s.addr, s.logPath)
		}
		ss := res.Servers[i]
		var err error
		if ss.RSSAfterKiB, err = procstat.RSSKiB(s.pid); err != nil {
			return res, err
		}
		ss.GoroutinesAfter, _ = procstat.Goroutines(s.base())
		ss.LibConnsAfter, _ = procstat.Conns(s.base())
		res.RSSAfterKiB += ss.RSSAfterKiB
	}
	res.TCPInuse[1], res.TCPMemPage[1], _ = procstat.TCPSockstat()
	// After RSS: this runs a GC in every server.
	var heap, stack, gBefore, gAfter int64
	res.HeldAll = true
	for i, s := range srvs {
		ss := res.Servers[i]
		ss.HeapAfter, ss.StackAfter, _ = procstat.Live(s.base())
		heap += ss.HeapAfter - ss.HeapBefore
		stack += ss.StackAfter - ss.StackBefore
		gBefore += int64(ss.GoroutinesBefore)
		gAfter += int64(ss.GoroutinesAfter)
		// An event-driven library (ginws-events) holds an idle connection
		// without a goroutine: its own count is what shows it holds them.
		grew := ss.GoroutinesAfter - ss.GoroutinesBefore
		if ss.LibConnsBefore >= 0 && ss.LibConnsAfter >= 0 {
			grew = ss.LibConnsAfter - ss.LibConnsBefore
		}
		if grew < ss.Connected || ss.Connected < ss.Conns {
			res.HeldAll = false
		}
	}
	if c := float64(res.Connected); c > 0 {
		res.RSSPerConnKiB = float64(res.RSSAfterKiB-res.RSSBeforeKiB) / c
		res.HeapPerConnKiB = float64(heap) / 1024 / c
		res.StackPerConnKiB = float64(stack) / 1024 / c
		res.GoroutinesPerConn = float64(gAfter-gBefore) / c
	}
	logf("   servers' RSS %s -> %s, %.2f KiB/conn (heap %.2f + stacks %.2f KiB), goroutines/conn %.2f, every server holds its share: %v",
		fmtKiB(res.RSSBeforeKiB), fmtKiB(res.RSSAfterKiB), res.RSSPerConnKiB, res.HeapPerConnKiB, res.StackPerConnKiB, res.GoroutinesPerConn, res.HeldAll)

	// Shutdown: SIGTERM to every server at once; each closes its
	// connections with 1001 and exits; the load processes count the close
	// frames.
	busy2, _ := procstat.BusySeconds()
	cpu2 := ownCPU(srvs, loads)
	t1 := time.Now()
	for _, s := range srvs {
		s.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, s := range srvs {
		select {
		case <-s.done:
		case <-time.After(3 * time.Minute):
		}
	}
	res.ShutdownSeconds = time.Since(t1).Seconds()
	busy3, _ := procstat.BusySeconds()
	// The servers that exited are gone from /proc: count their CPU from
	// their process state.
	cpu3 := ownCPU(srvs, loads)
	res.ShutdownBackgroundCPUs = max(0, (busy3-busy2)-(cpu3-cpu2)) / res.ShutdownSeconds
	for i, s := range srvs {
		ss := res.Servers[i]
		if s.alive() {
			ss.ExitCode = -1
			continue
		}
		ss.ExitCode = s.cmd.ProcessState.ExitCode()
		if ss.ExitCode == 0 {
			res.CleanExits++
		}
		s.mu.Lock()
		ss.ShutdownLine = s.shutdownLine
		s.mu.Unlock()
	}
	for i, l := range loads {
		var r struct {
			Mode           string         `json:"mode"`
			CloseCodes     map[int]int    `json:"close_codes"`
			NoCloseFrame   int            `json:"no_close_frame"`
			NoCloseReasons map[string]int `json:"no_close_reasons"`
			StillOpen      int            `json:"still_open"`
			LastCloseMs    int64          `json:"last_close_unix_ms"`
		}
		if err := readLine(l, &r); err != nil {
			return res, fmt.Errorf("load %d, close report: %w", i+1, err)
		}
		ss := res.Servers[i]
		ss.CloseCodes, ss.NoCloseFrame, ss.NoCloseReasons, ss.StillOpen = r.CloseCodes, r.NoCloseFrame, r.NoCloseReasons, r.StillOpen
		if r.LastCloseMs > 0 {
			ss.LastCloseAfterSec = float64(r.LastCloseMs-t1.UnixMilli()) / 1000
		}
		for c, v := range r.CloseCodes {
			res.CloseCodes[c] += v
		}
		for why, v := range r.NoCloseReasons {
			res.NoCloseReasons[why] += v
		}
		res.NoCloseFrame += r.NoCloseFrame
		res.StillOpen += r.StillOpen
	}
	time.Sleep(time.Second)
	res.TCPInuse[2], res.TCPMemPage[2], _ = procstat.TCPSockstat()
	logf("   shutdown in %.1f s: close codes %v, no close frame %d %v, still open %d, clean exits %d of %d%s",
		res.ShutdownSeconds, res.CloseCodes, res.NoCloseFrame, res.NoCloseReasons, res.StillOpen, res.CleanExits, len(srvs),
		noiseNote(o, Run{BackgroundCPUs: res.ShutdownBackgroundCPUs}))

	switch {
	case res.Connected < n:
		return res, fmt.Errorf("only %d of %d connections opened: %s", res.Connected, n, res.FirstError)
	case !res.HeldAll:
		return res, fmt.Errorf("a server's count of its connections (or of its goroutines, for a library that counts none) did not grow by the connections it was sent")
	case res.StillOpen > 0:
		return res, fmt.Errorf("%d connection(s) not closed by the servers", res.StillOpen)
	case res.CleanExits < len(srvs):
		return res, fmt.Errorf("only %d of %d servers exited cleanly (see their logs)", res.CleanExits, len(srvs))
	}
	return res, nil
}

// ownCPU is the CPU time the servers and load processes have used so far
// (from /proc while they run, from their process state once they exited).
func ownCPU(srvs []*server, loads []*scaleLoad) float64 {
	var sum float64
	for _, s := range srvs {
		if !s.alive() && s.cmd.ProcessState != nil {
			sum += (s.cmd.ProcessState.UserTime() + s.cmd.ProcessState.SystemTime()).Seconds()
			continue
		}
		c, _ := procstat.CPUSeconds(s.pid)
		sum += c
	}
	for _, l := range loads {
		c, _ := procstat.CPUSeconds(l.cmd.Process.Pid)
		sum += c
	}
	return sum
}

// readLine reads one JSON line of a load process.
func readLine(l *scaleLoad, v any) error {
	line, err := l.out.ReadString('\n')
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(l.errb.String()))
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		return fmt.Errorf("output %q: %v", line, err)
	}
	return nil
}

func scaleMarkdown(o options, r *ScaleReport) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# ginws at scale: %s idle connections\n\n", fmtCount(float64(r.Target)))
	p("Generated by `BENCH_SCALE=%d bash bench/run.sh`. How it works and how to read it: see [../README.md](../README.md#scale-mode).\n\n", r.Target)
	p("| setting | value |\n|---|---|\n")
	for _, kv := range r.Env {
		if strings.HasPrefix(kv.Key, "echo runs") || strings.HasPrefix(kv.Key, "idle test") || strings.HasPrefix(kv.Key, "upgrade test") || kv.Key == "rounds" {
			continue
		}
		p("| %s | %s |\n", kv.Key, mdEscape(kv.Value))
	}
	k := (r.Target + r.PerServer - 1) / r.PerServer
	p("| layout | %d server processes of the library (at most %d connections each, the open-file limit being 20000 per process), each on its own address 127.0.0.11 and up, port chosen by the kernel; one load process per server, dialing 32 at a time from its own %d source addresses (127.20.0.1 and up for the first, 127.21.0.1 for the second, …) |\n", k, r.PerServer, o.scaleSrcIPs)
	p("| servers | `-graceful`: on SIGTERM every connection gets a close frame with 1001 before the process exits |\n")
	p("| wall time of this run | %.0f s |\n\n", r.WallSeconds)
	if len(r.Failures) > 0 {
		p("## Failures\n\n")
		for _, f := range r.Failures {
			p("- %s\n", mdEscape(f))
		}
		p("\n")
	}

	var base *ScaleResult
	for _, res := range r.Results {
		if res.Lib == "ginws" && res.Connected > 0 {
			base = res
		}
	}
	vs := func(res *ScaleResult) string {
		if base == nil || base.RSSPerConnKiB <= 0 || res.Connected == 0 {
			return "—"
		}
		return fmt.Sprintf("%.2f×", res.RSSPerConnKiB/base.RSSPerConnKiB)
	}
	noisy := false
	p("## Memory and goroutines\n\n")
	p("All servers of a library together. RSS is the sum of the servers' VmRSS before the first connection and 1 s after the last one opened; per connection = (after − before) / connections. ")
	p("Heap and stacks are the growth of the live heap and of goroutine stacks after a forced GC (`/debug/live`). ")
	p("\"vs ginws\": RSS per connection of the peer ÷ ginws's, above 1.00× the peer uses more.\n\n")
	p("| library | connections held | servers | RSS before | RSS after | RSS per connection | vs ginws | live heap per connection | stacks per connection | goroutines per connection | every server holds its share |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, res := range r.Results {
		if res.Connected == 0 {
			p("| %s | error | | | | | | | | | |\n", res.Lib)
			continue
		}
		p("| %s | %s | %d | %s | %s | %.1f KiB | %s | %.1f KiB | %.1f KiB | %.2f | %s |\n", res.Lib, fmtCount(float64(res.Connected)), len(res.Servers),
			fmtKiB(res.RSSBeforeKiB), fmtKiB(res.RSSAfterKiB), res.RSSPerConnKiB, vs(res), res.HeapPerConnKiB, res.StackPerConnKiB,
			res.GoroutinesPerConn, pick(res.HeldAll, "yes", "**no**"))
	}
	p("\n## Opening them\n\n")
	p("From starting the load processes to the last of them having all its connections open (TCP connect and WebSocket handshake, 32 in flight per load process). ")
	p("CPU: servers pinned to CPU %s, load processes to CPU %s; background is what other processes of the machine used meanwhile.\n\n", pick(o.serverCPUs != "", o.serverCPUs, "any"), pick(o.loadCPUs != "", o.loadCPUs, "any"))
	p("| library | connections | time to open | connections/s | server CPU | server CPU per connection | load CPU | background CPU |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, res := range r.Results {
		if res.Connected == 0 {
			continue
		}
		mark := ""
		if res.BackgroundCPUs > noisyCPUs {
			mark, noisy = " ⚠", true
		}
		p("| %s | %s | %.1f s%s | %s | %.1f s | %.0f µs | %.1f s | %.0f%% |\n", res.Lib, fmtCount(float64(res.Connected)), res.OpenSeconds, mark,
			fmtCount(float64(res.Connected)/res.OpenSeconds), res.ServerCPUSeconds, res.ServerCPUSeconds/float64(res.Connected)*1e6,
			res.LoadCPUSeconds, res.BackgroundCPUs*100)
	}
	if noisy {
		p("\n⚠ other processes used more than %.0f%% of a CPU while the connections opened: the time is less reliable (memory is not affected).\n", noisyCPUs*100)
	}
	p("\n## Kernel\n\n")
	p("From `/proc/net/sockstat`: TCP sockets in use (both ends of every loopback connection are on this machine) and the memory of the kernel's TCP buffers, which is not in any process's RSS. Idle sockets hold almost none.\n\n")
	p("| library | TCP sockets before | while held | after shutdown | TCP memory while held − before | per connection (both ends) |\n|---|---:|---:|---:|---:|---:|\n")
	for _, res := range r.Results {
		if res.Connected == 0 {
			continue
		}
		d := res.TCPMemPage[1] - res.TCPMemPage[0]
		p("| %s | %s | %s | %s | %.1f MiB | %.0f B |\n", res.Lib, fmtCount(float64(res.TCPInuse[0])), fmtCount(float64(res.TCPInuse[1])), fmtCount(float64(res.TCPInuse[2])),
			float64(d)*4096/(1<<20), float64(d)*4096/float64(res.Connected))
	}
	noisy = false
	p("\n## Shutdown\n\n")
	p("SIGTERM to every server at once. Each one (`-graceful`) closes its connections with a close frame 1001 \"going away\" — ginws and ginws-events with `Server.Shutdown`, as the example server does; gorilla with `WriteControl`, gws with `WriteClose`, on every connection the server tracked — and exits. ")
	p("The load processes answer each close frame and count them by status code, and count the connections that ended without one.\n\n")
	p("| library | SIGTERM → all servers exited | SIGTERM → last close seen by a client | close frames received | ended without a close frame | not closed | servers exited with 0 | background CPU |\n|---|---:|---:|---|---:|---:|---:|---:|\n")
	for _, res := range r.Results {
		if res.Connected == 0 {
			continue
		}
		var last float64
		for _, ss := range res.Servers {
			last = max(last, ss.LastCloseAfterSec)
		}
		mark := ""
		if res.ShutdownBackgroundCPUs > noisyCPUs {
			mark, noisy = " ⚠", true
		}
		p("| %s | %.1f s%s | %.1f s | %s | %s | %d | %d of %d | %.0f%% |\n", res.Lib, res.ShutdownSeconds, mark, last, fmtCodes(res.CloseCodes),
			fmtNoClose(res.NoCloseFrame, res.NoCloseReasons), res.StillOpen, res.CleanExits, len(res.Servers), res.ShutdownBackgroundCPUs*100)
	}
	if noisy {
		p("\n⚠ other processes used more than %.0f%% of a CPU during the shutdown: its duration is less reliable, and a close handshake that a starved process could not finish within ginws's close timeout (5 s) ends without one.\n", noisyCPUs*100)
	}
	p("\n## Every server\n\n")
	p("Each server must show that it holds the connections its load process opened: the live connections its library counts (`/debug/conns`: ginws, ginws-events) must have grown by at least that many; for a library that counts none (gorilla, gws), its goroutines, one per connection (ginws-events has no goroutine for an idle connection). The last column is what the server printed when it had closed its connections.\n\n")
	p("| library | server | source addresses | connections | dial time | library's count before → after | goroutines before → after | RSS before → after | shutdown |\n|---|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, res := range r.Results {
		for _, ss := range res.Servers {
			counted := "—"
			if ss.LibConnsBefore >= 0 && ss.LibConnsAfter >= 0 {
				counted = fmt.Sprintf("%d → %d", ss.LibConnsBefore, ss.LibConnsAfter)
			}
			p("| %s | %s | %s | %s | %.1f s | %s | %d → %d | %s → %s | %s |\n", res.Lib, ss.Addr, ss.SrcAddrs, fmtCount(float64(ss.Connected)), ss.DialSeconds,
				counted, ss.GoroutinesBefore, ss.GoroutinesAfter, fmtKiB(ss.RSSBeforeKiB), fmtKiB(ss.RSSAfterKiB), mdEscape(strings.TrimPrefix(ss.ShutdownLine, "shutdown: ")))
		}
	}
	return b.String()
}

func fmtNoClose(n int, why map[string]int) string {
	if n == 0 {
		return "0"
	}
	var parts []string
	for k, v := range why {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	slices.Sort(parts)
	return fmt.Sprintf("%d (%s)", n, strings.Join(parts, ", "))
}

func fmtCodes(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	var codes []int
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%s × %d", fmtCount(float64(m[c])), c))
	}
	return strings.Join(parts, ", ")
}
