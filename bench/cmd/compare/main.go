// Command compare drives the ginws benchmark: for each library it starts the
// echo server, runs the load generator against it for every scenario, stops
// it, and at the end writes results.md, results.json and PNG charts.
//
// bench/run.sh builds the binaries and calls it; every setting has a flag
// whose default comes from a BENCH_* environment variable (see README.md).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ginws/ginws/bench/internal/procstat"
)

// allLibs is every server the benchmark knows, ginws first.
var allLibs = []string{"ginws", "ginws-events", "gorilla", "coder", "gws", "melody", "gobwas", "fastify"}

// isGinws reports whether lib is built from the ginws source tree: ginws
// itself (a goroutine per connection, the baseline every ratio divides by)
// or ginws-events (the same library, event-driven with Conn.OnMessage).
func isGinws(lib string) bool { return lib == "ginws" || lib == "ginws-events" }

// maxConnsPerLoad is how many sockets one load process holds: the open-file
// limit of this machine is 20000 per process, and a few are needed besides.
const maxConnsPerLoad = 19000

type options struct {
	libs            []string
	serverBin       string
	loadBin         string
	nodeDir         string
	outDir          string
	quick           bool
	duration        time.Duration
	warmup          time.Duration
	sizes           []int
	conns           []int
	idleConns       int
	upgradeParallel int
	upgradeDuration time.Duration
	serverCPUs      string
	loadCPUs        string
	gomaxprocs      int
	loadProcs       int
	rounds          int
	profile         bool
	notesPath       string
	scale           int
	scalePerServer  int
	scaleSrcIPs     int
	quietWait       time.Duration
	perfEvents      string // perf's -e list for the system call counts, empty: not counted
}

func env(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

func main() {
	var o options
	quickDefault := env("BENCH_QUICK", "0") != "0"
	libs := flag.String("libs", env("BENCH_LIBS", strings.Join(allLibs, " ")), "libraries to measure, space or comma separated ($BENCH_LIBS)")
	flag.StringVar(&o.serverBin, "server-bin", "", "path of the built cmd/server binary")
	flag.StringVar(&o.loadBin, "load-bin", "", "path of the built cmd/load binary")
	flag.StringVar(&o.nodeDir, "node-dir", "", "directory of the Node server (server.js, node_modules)")
	flag.StringVar(&o.outDir, "out", env("BENCH_OUT", "results"), "directory for results.md, results.json and charts ($BENCH_OUT)")
	flag.BoolVar(&o.quick, "quick", quickDefault, "1 s runs ($BENCH_QUICK=1)")
	dur := flag.String("duration", env("BENCH_DURATION", ""), "length of each echo run (default 5s, quick 1s) ($BENCH_DURATION)")
	warm := flag.String("warmup", env("BENCH_WARMUP", ""), "unmeasured run before each echo and upgrade run (default 1s, quick 200ms) ($BENCH_WARMUP)")
	sizes := flag.String("sizes", env("BENCH_SIZES", "64 1024 65536"), "echo message sizes in bytes, none to skip the echo runs ($BENCH_SIZES)")
	conns := flag.String("conns", env("BENCH_CONNS", "1 100"), "echo connection counts ($BENCH_CONNS)")
	idle := flag.String("idle-conns", env("BENCH_IDLE_CONNS", "10000"), "connections of the idle test, 0 to skip ($BENCH_IDLE_CONNS)")
	upPar := flag.String("upgrade-parallel", env("BENCH_UPGRADE_PARALLEL", "64"), "parallel workers of the upgrade test, 0 to skip ($BENCH_UPGRADE_PARALLEL)")
	upDur := flag.String("upgrade-duration", env("BENCH_UPGRADE_DURATION", ""), "length of the upgrade run (default: -duration) ($BENCH_UPGRADE_DURATION)")
	defServer, defLoad := defaultCPUs()
	flag.StringVar(&o.serverCPUs, "server-cpus", env("BENCH_SERVER_CPUS", defServer), "CPU list the servers are pinned to with taskset, empty for none ($BENCH_SERVER_CPUS)")
	flag.StringVar(&o.loadCPUs, "load-cpus", env("BENCH_LOAD_CPUS", defLoad), "CPU list the load generator is pinned to, empty for none ($BENCH_LOAD_CPUS)")
	rounds := flag.String("rounds", env("BENCH_ROUNDS", "1"), "run everything this many times (library order rotated) and report the median ($BENCH_ROUNDS)")
	sysc := flag.String("syscalls", env("BENCH_SYSCALLS", "1"), "count each server's system calls per operation with perf, in a short run of its own per scenario in the first round (1) or not (0) ($BENCH_SYSCALLS)")
	prof := flag.String("profile", env("BENCH_PROFILE", "1"), "heap-profile the idle connections of every Go library once (1) or not (0) ($BENCH_PROFILE)")
	flag.StringVar(&o.notesPath, "memory-notes", "", "Markdown file appended to the memory section of results.md")
	gmp := flag.String("gomaxprocs", env("BENCH_GOMAXPROCS", ""), "GOMAXPROCS of the Go servers (default: number of server CPUs) ($BENCH_GOMAXPROCS)")
	scale := flag.String("scale", env("BENCH_SCALE", "0"), "scale mode: hold this many idle connections over several server processes, write scale.md, and nothing else ($BENCH_SCALE)")
	perServer := flag.String("scale-per-server", env("BENCH_SCALE_PER_SERVER", "17000"), "scale mode: most connections per server process ($BENCH_SCALE_PER_SERVER)")
	srcIPs := flag.String("scale-src-ips", env("BENCH_SCALE_SRC_IPS", "1024"), "scale mode: source addresses per load process ($BENCH_SCALE_SRC_IPS)")
	quiet := flag.String("quiet-wait", env("BENCH_QUIET_WAIT", "0"), "before each echo and upgrade run, wait up to this long for other processes to use less than 20% of a CPU; 0: do not wait ($BENCH_QUIET_WAIT)")
	render := flag.String("render", "", "RESULTS.JSON: write results.md and the charts again from a results.json (into -out), with the current -memory-notes, and exit")
	heapDiff := flag.String("heap-diff", "", "BEFORE,AFTER: print the allocation sites of two heap profiles (after − before), divided by -heap-conns, and exit")
	heapConns := flag.Int("heap-conns", 1, "with -heap-diff: divide by this many connections")
	flag.Parse()

	if *heapDiff != "" {
		printHeapDiff(*heapDiff, *heapConns)
		return
	}
	if *render != "" {
		rerender(*render, o)
		return
	}

	o.libs = splitList(*libs)
	for _, l := range o.libs {
		if !contains(allLibs, l) {
			fail("unknown library %q in BENCH_LIBS (have %s)", l, strings.Join(allLibs, " "))
		}
	}
	if len(o.libs) == 0 {
		fail("no library to measure")
	}
	o.duration = parseDur(*dur, pick(o.quick, "1s", "5s"))
	o.warmup = parseDur(*warm, pick(o.quick, "200ms", "1s"))
	o.upgradeDuration = parseDur(*upDur, o.duration.String())
	o.quietWait = parseDur(*quiet, "0")
	o.sizes = parseInts(*sizes)
	o.conns = parseInts(*conns)
	o.idleConns = parseInt(*idle)
	o.upgradeParallel = parseInt(*upPar)
	o.profile = *prof != "0" && o.idleConns > 0
	if *sysc != "0" {
		if o.perfEvents = perfEvents(); o.perfEvents == "" {
			logf("perf cannot count system calls here (not installed, or not allowed): no system call table")
		}
	}
	if os.Getenv("BENCH_PIN") == "0" {
		o.serverCPUs, o.loadCPUs = "", ""
	}
	o.gomaxprocs = cpuCount(o.serverCPUs)
	if *gmp != "" {
		o.gomaxprocs = parseInt(*gmp)
	}
	o.loadProcs = cpuCount(o.loadCPUs)
	if o.rounds = parseInt(*rounds); o.rounds < 1 {
		fail("BENCH_ROUNDS must be at least 1")
	}
	if o.serverBin == "" || o.loadBin == "" {
		fail("-server-bin and -load-bin are required (bench/run.sh sets them)")
	}
	if contains(o.libs, "fastify") && o.nodeDir == "" {
		fail("-node-dir is required to run fastify")
	}
	if err := os.MkdirAll(filepath.Join(o.outDir, "logs"), 0o755); err != nil {
		fail("%v", err)
	}

	o.scale, o.scalePerServer, o.scaleSrcIPs = parseInt(*scale), parseInt(*perServer), parseInt(*srcIPs)
	if o.scale > 0 {
		if contains(o.libs, "fastify") {
			fail("the scale mode runs the Go servers only (it needs -graceful and /debug/goroutines); leave fastify out of BENCH_LIBS")
		}
		if o.scalePerServer < 1 || o.scalePerServer > maxConnsPerLoad {
			fail("BENCH_SCALE_PER_SERVER must be 1..%d: a server and its load process each hold that many sockets, under the open-file limit", maxConnsPerLoad)
		}
		if k := (o.scale + o.scalePerServer - 1) / o.scalePerServer; k > 200 {
			fail("BENCH_SCALE %d needs %d server processes; at most 200 (addresses 127.0.0.11–210)", o.scale, k)
		}
		if o.scaleSrcIPs < 1 || o.scaleSrcIPs > 65000 {
			fail("BENCH_SCALE_SRC_IPS must be 1..65000")
		}
		runScale(o)
		return
	}

	rep := &Report{
		Started:  time.Now(),
		Env:      describeEnv(o),
		Libs:     o.libs,
		Duration: o.duration.String(),
		Warmup:   o.warmup.String(),
		Rounds:   o.rounds,
	}
	start := time.Now()
	for round := 0; round < o.rounds; round++ {
		for i := range o.libs {
			lib := o.libs[(i+round)%len(o.libs)]
			if o.rounds > 1 {
				logf("== %s (round %d of %d)", lib, round+1, o.rounds)
			} else {
				logf("== %s", lib)
			}
			runLib(o, lib, rep, round)
		}
	}
	rep.finish()
	if o.notesPath != "" {
		if b, err := os.ReadFile(o.notesPath); err == nil {
			rep.memoryNotes = string(b)
		}
	}
	rep.WallSeconds = time.Since(start).Seconds()

	if err := writeReport(o, rep); err != nil {
		fail("writing the report: %v", err)
	}
	logf("wrote %s", filepath.Join(o.outDir, "results.md"))
	if len(rep.Failures) > 0 {
		logf("%d failure(s):", len(rep.Failures))
		for _, f := range rep.Failures {
			logf("  %s", f)
		}
		os.Exit(1)
	}
}

// runLib measures one library: echo runs on one server process, then the idle
// test and the upgrade test each on a fresh one, so that the memory figures
// start from a clean process.
func runLib(o options, lib string, rep *Report, round int) {
	failf := func(format string, a ...any) {
		msg := lib + ": " + fmt.Sprintf(format, a...)
		if o.rounds > 1 {
			msg = fmt.Sprintf("round %d: %s", round+1, msg)
		}
		logf("FAIL %s", msg)
		rep.Failures = append(rep.Failures, msg)
	}

	if len(o.sizes) > 0 && len(o.conns) > 0 {
		srv, err := startServer(o, lib, "echo")
		if err != nil {
			failf("start: %v", err)
			return
		}
		for _, size := range o.sizes {
			for _, n := range o.conns {
				sc := scenarioName(size, n)
				run, err := runMeasured(o, srv, "-mode", "echo", "-conns", strconv.Itoa(n), "-size", strconv.Itoa(size),
					"-duration", o.duration.String(), "-warmup", o.warmup.String())
				if err == nil && run.Errors > 0 {
					err = fmt.Errorf("%d connection(s) failed: %s", run.Errors, run.FirstError)
				}
				if err != nil {
					failf("echo %s: %v", sc, err)
				} else {
					logf("   echo %-16s %9.0f msg/s %8.1f MB/s  p50 %8s  p99 %8s  server %5.1f µs CPU/msg%s",
						sc, run.MsgsPerSec, run.MBPerSec, fmtLatency(run.P50us), fmtLatency(run.P99us), run.ServerCPUPerOpUs, noiseNote(o, run))
				}
				rep.addEcho(sc, size, n, lib, run, err)
				if round == 0 && o.perfEvents != "" {
					countInto(o, srv, rep, sc, lib, "-mode", "echo", "-conns", strconv.Itoa(n), "-size", strconv.Itoa(size))
				}
			}
		}
		if !srv.alive() {
			failf("server died during the echo runs (see %s)", srv.logPath)
		}
		srv.stop()
	}

	if o.idleConns > 0 {
		srv, err := startServer(o, lib, "idle")
		if err != nil {
			failf("start: %v", err)
		} else {
			res, err := runIdle(o, srv, o.idleConns, nil)
			if err != nil {
				failf("idle: %v", err)
			} else {
				live := "n/a"
				if res.LivePerConnKiB > 0 {
					live = fmt.Sprintf("%.2f KiB/conn", res.LivePerConnKiB)
				}
				logf("   idle %d conns: RSS %d -> %d KiB, %.2f KiB/conn (live heap+stacks %s), goroutines/conn %s",
					res.Connected, res.RSSBeforeKiB, res.RSSAfterKiB, res.RSSPerConnKiB, live, fmtGoroutines(res.GoroutinesPerConn, res.GoroutinesAfter))
			}
			rep.addIdle(lib, Run{LoadResult: res}, err)
			srv.stop()
		}
	}

	if o.profile && round == 0 && lib != "fastify" {
		mp, err := profileIdle(o, lib, o.idleConns)
		if err != nil {
			failf("memory profile: %v", err)
		} else {
			logf("   memory profile: heap %.0f B + stacks %.0f B per connection (RSS %.0f B)", mp.HeapPerConnB, mp.StackPerConnB, mp.RSSPerConnB)
			if rep.Memory == nil {
				rep.Memory = map[string]*MemProfile{}
			}
			rep.Memory[lib] = mp
		}
	}

	if o.upgradeParallel > 0 {
		srv, err := startServer(o, lib, "upgrade")
		if err != nil {
			failf("start: %v", err)
		} else {
			run, err := runMeasured(o, srv, "-mode", "upgrade", "-conns", strconv.Itoa(o.upgradeParallel),
				"-duration", o.upgradeDuration.String(), "-warmup", o.warmup.String())
			if err == nil && run.Errors > 0 {
				err = fmt.Errorf("%d failed upgrade(s): %s", run.Errors, run.FirstError)
			}
			if err != nil {
				failf("upgrade: %v", err)
			} else {
				logf("   upgrade x%d: %.0f/s  p50 %s  p99 %s  server %.1f µs CPU/upgrade%s", o.upgradeParallel, run.UpgradesPerSec,
					fmtLatency(run.P50us), fmtLatency(run.P99us), run.ServerCPUPerOpUs, noiseNote(o, run))
			}
			rep.addUpgrade(lib, run, err)
			if round == 0 && o.perfEvents != "" {
				countInto(o, srv, rep, "upgrade", lib, "-mode", "upgrade", "-conns", strconv.Itoa(o.upgradeParallel))
			}
			srv.stop()
		}
	}
}

// Run is one load run with what the driver measured around it.
type Run struct {
	LoadResult
	WallSeconds      float64 `json:"wall_seconds,omitempty"`
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	LoadCPUSeconds   float64 `json:"load_cpu_seconds,omitempty"`
	// ServerCPUPerOpUs is the server's CPU time per message (echo) or per
	// upgrade, warm-up included, in µs: its cost, whatever the throughput.
	ServerCPUPerOpUs float64 `json:"server_cpu_per_op_us,omitempty"`
	// ServerSysCPUSeconds is the part of ServerCPUSeconds spent in the
	// kernel (system calls, and on loopback the receiving side's TCP path
	// of what the server writes), and ServerSysCPUPerOpUs that part per
	// message or upgrade.
	ServerSysCPUSeconds float64 `json:"server_sys_cpu_seconds,omitempty"`
	ServerSysCPUPerOpUs float64 `json:"server_sys_cpu_per_op_us,omitempty"`
	// BackgroundCPUs is the CPU that processes other than the server and the
	// load generator used during the run, in CPUs (1 = one whole CPU).
	BackgroundCPUs float64 `json:"background_cpus"`
	// LoadBound is set when the load generator kept its CPUs busy: the
	// server may have had spare capacity.
	LoadBound bool `json:"load_bound,omitempty"`
}

// noisyCPUs is the background CPU use above which a run is flagged.
const noisyCPUs = 0.2

func noiseNote(o options, r Run) string {
	var s string
	if r.BackgroundCPUs > noisyCPUs {
		s += fmt.Sprintf("  [background CPU %.0f%%]", r.BackgroundCPUs*100)
	}
	if r.LoadBound {
		s += "  [load generator saturated]"
	}
	return s
}

// runMeasured runs the load generator and accounts for the CPU used meanwhile
// by the server, the generator, and everything else on the machine.
func runMeasured(o options, s *server, args ...string) (Run, error) {
	waitQuiet(o, s)
	busy0, _ := procstat.BusySeconds()
	user0, sys0, _ := procstat.CPUTimes(s.pid)
	t0 := time.Now()
	res, loadCPU, err := runLoad(o, s, args...)
	wall := time.Since(t0).Seconds()
	busy1, _ := procstat.BusySeconds()
	user1, sys1, _ := procstat.CPUTimes(s.pid)
	run := Run{
		LoadResult:          res,
		WallSeconds:         wall,
		ServerCPUSeconds:    (user1 + sys1) - (user0 + sys0),
		ServerSysCPUSeconds: sys1 - sys0,
		LoadCPUSeconds:      loadCPU,
	}
	if wall > 0 {
		run.BackgroundCPUs = max(0, (busy1-busy0)-run.ServerCPUSeconds-loadCPU) / wall
		run.LoadBound = loadCPU/wall > 0.9*float64(o.loadProcs)
	}
	if ops := res.AllMessages + res.AllUpgrades; ops > 0 {
		run.ServerCPUPerOpUs = run.ServerCPUSeconds / float64(ops) * 1e6
		run.ServerSysCPUPerOpUs = run.ServerSysCPUSeconds / float64(ops) * 1e6
	}
	return run, err
}

// waitQuiet waits, up to o.quietWait, until the processes other than the
// server use no more than noisyCPUs, sampling a second at a time.
func waitQuiet(o options, s *server) {
	if o.quietWait <= 0 {
		return
	}
	t0 := time.Now()
	waited := false
	for {
		b0, _ := procstat.BusySeconds()
		c0, _ := procstat.CPUSeconds(s.pid)
		time.Sleep(time.Second)
		b1, _ := procstat.BusySeconds()
		c1, _ := procstat.CPUSeconds(s.pid)
		bg := max(0, (b1-b0)-(c1-c0)) / time.Second.Seconds()
		switch {
		case bg <= noisyCPUs:
			if waited {
				logf("   quiet after %s", time.Since(t0).Round(time.Second))
			}
			return
		case time.Since(t0) >= o.quietWait:
			logf("   still %.0f%% of a CPU in other processes after %s: measuring anyway", bg*100, o.quietWait)
			return
		case !waited:
			logf("   other processes use %.0f%% of a CPU: waiting up to %s", bg*100, o.quietWait)
			waited = true
		}
	}
}

func scenarioName(size, conns int) string {
	c := "conns"
	if conns == 1 {
		c = "conn"
	}
	return fmt.Sprintf("%s × %d %s", fmtSize(size), conns, c)
}

// ---- server processes ----

type server struct {
	lib     string
	cmd     *exec.Cmd
	pid     int
	addr    string // host:port
	logPath string
	logFile *os.File
	done    chan struct{}

	mu           sync.Mutex
	shutdownLine string // "shutdown: …" printed by a -graceful server
}

func startServer(o options, lib, phase string) (*server, error) {
	return startServerAt(o, lib, phase, "127.0.0.1:0")
}

// startServerAt starts a server listening on addr, with extra flags for the
// Go server (-graceful, -pprof, …).
func startServerAt(o options, lib, phase, addr string, extra ...string) (*server, error) {
	var argv []string
	dir := ""
	if lib == "fastify" {
		argv = []string{"node", "server.js", "-addr", addr}
		dir = o.nodeDir
	} else {
		argv = append([]string{o.serverBin, "-lib", lib, "-addr", addr}, extra...)
	}
	if o.serverCPUs != "" {
		argv = append([]string{"taskset", "-c", o.serverCPUs}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(o.gomaxprocs), "GODEBUG=", "GOGC=")
	logPath := filepath.Join(o.outDir, "logs", lib+"-"+phase+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = lf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		lf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	s := &server{lib: lib, cmd: cmd, pid: cmd.Process.Pid, logPath: logPath, logFile: lf, done: make(chan struct{})}
	ready := make(chan string, 1)
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(lf, line)
			if rest, ok := strings.CutPrefix(line, "listening on http://"); ok && !sent {
				ready <- strings.TrimSpace(rest)
				sent = true
			}
			if strings.HasPrefix(line, "shutdown:") {
				s.mu.Lock()
				s.shutdownLine = line
				s.mu.Unlock()
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	// Wait closes the pipe: read stdout to its end first, so that the last
	// lines of the server are not lost.
	go func() { <-outDone; cmd.Wait(); close(s.done) }()
	select {
	case addr := <-ready:
		s.addr = addr
	case <-s.done:
		lf.Close()
		return nil, fmt.Errorf("server exited before it was ready (see %s)", logPath)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("server not ready after 60s (see %s)", logPath)
	}
	// Let the runtime finish starting up (and Node compile) before measuring.
	time.Sleep(300 * time.Millisecond)
	return s, nil
}

func (s *server) url() string  { return "ws://" + s.addr + "/echo" }
func (s *server) base() string { return "http://" + s.addr }

func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *server) stop() {
	if s.alive() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	s.logFile.Close()
}

// ---- load processes ----

// LoadResult is the JSON line of cmd/load.
type LoadResult struct {
	Mode              string  `json:"mode"`
	Conns             int     `json:"conns"`
	Size              int     `json:"size"`
	Seconds           float64 `json:"seconds"`
	Errors            int64   `json:"errors"`
	FirstError        string  `json:"first_error"`
	Messages          int64   `json:"messages"`
	AllMessages       int64   `json:"all_messages"`
	MsgsPerSec        float64 `json:"msgs_per_sec"`
	MBPerSec          float64 `json:"mb_per_sec"`
	P50us             float64 `json:"p50_us"`
	P90us             float64 `json:"p90_us"`
	P99us             float64 `json:"p99_us"`
	MaxUs             float64 `json:"max_us"`
	MeanUs            float64 `json:"mean_us"`
	Connected         int     `json:"connected"`
	DialSeconds       float64 `json:"dial_seconds"`
	RSSBeforeKiB      int64   `json:"rss_before_kib"`
	RSSAfterKiB       int64   `json:"rss_after_kib"`
	RSSPerConnKiB     float64 `json:"rss_per_conn_kib"`
	GoroutinesBefore  int     `json:"goroutines_before"`
	GoroutinesAfter   int     `json:"goroutines_after"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	LiveBeforeBytes   int64   `json:"live_before_bytes,omitempty"`
	LiveAfterBytes    int64   `json:"live_after_bytes,omitempty"`
	LivePerConnKiB    float64 `json:"live_per_conn_kib,omitempty"`
	// The two parts of LivePerConnKiB: live heap and goroutine stacks.
	HeapPerConnKiB  float64 `json:"heap_per_conn_kib,omitempty"`
	StackPerConnKiB float64 `json:"stack_per_conn_kib,omitempty"`
	Upgrades        int64   `json:"upgrades"`
	AllUpgrades     int64   `json:"all_upgrades"`
	UpgradesPerSec  float64 `json:"upgrades_per_sec"`
}

func loadCommand(ctx context.Context, o options, args ...string) *exec.Cmd {
	argv := append([]string{o.loadBin}, args...)
	if o.loadCPUs != "" {
		argv = append([]string{"taskset", "-c", o.loadCPUs}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = os.Environ()
	if o.loadProcs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(o.loadProcs))
	}
	return cmd
}

func runLoad(o options, s *server, args ...string) (LoadResult, float64, error) {
	var res LoadResult
	ctx, cancel := context.WithTimeout(context.Background(), o.duration+o.upgradeDuration+o.warmup+2*time.Minute)
	defer cancel()
	cmd := loadCommand(ctx, o, append([]string{"-url", s.url()}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var cpu float64
	if ps := cmd.ProcessState; ps != nil {
		cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	line := lastLine(stdout.String())
	if line != "" {
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return res, cpu, fmt.Errorf("load output %q: %v", line, err)
		}
	}
	if runErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if res.FirstError != "" {
			msg = res.FirstError
		}
		return res, cpu, fmt.Errorf("load: %v: %s", runErr, msg)
	}
	if line == "" {
		return res, cpu, errors.New("load printed no result")
	}
	return res, cpu, nil
}

// runIdle opens n idle connections, from as many load processes as the
// open-file limit needs, and measures the server while they are all open.
// during, if not nil, runs after the measurements, while the connections are
// still open.
func runIdle(o options, s *server, n int, during func() error) (LoadResult, error) {
	res := LoadResult{Mode: "idle", Conns: n}
	rss, err := procstat.RSSKiB(s.pid)
	if err != nil {
		return res, err
	}
	res.RSSBeforeKiB = rss
	res.GoroutinesBefore, _ = procstat.Goroutines(s.base())
	heap0, stack0, _ := procstat.Live(s.base())
	res.LiveBeforeBytes = heap0 + stack0

	procs := (n + maxConnsPerLoad - 1) / maxConnsPerLoad
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type proc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
		errb  bytes.Buffer
	}
	var ps []*proc
	defer func() {
		for _, p := range ps {
			p.stdin.Close()
		}
		for _, p := range ps {
			p.cmd.Wait()
		}
	}()
	t0 := time.Now()
	for i := 0; i < procs; i++ {
		share := n / procs
		if i < n%procs {
			share++
		}
		p := &proc{}
		p.cmd = loadCommand(ctx, o, "-url", s.url(), "-mode", "idle", "-conns", strconv.Itoa(share),
			"-wait-stdin", "-settle", "0s", "-parallel", "32")
		p.cmd.Stderr = &p.errb
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			return res, err
		}
		stdout, err := p.cmd.StdoutPipe()
		if err != nil {
			return res, err
		}
		p.out = bufio.NewReader(stdout)
		if err := p.cmd.Start(); err != nil {
			return res, err
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		line, err := p.out.ReadString('\n')
		if err != nil {
			return res, fmt.Errorf("idle load: %v: %s", err, strings.TrimSpace(p.errb.String()))
		}
		var r LoadResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return res, fmt.Errorf("idle load output %q: %v", line, err)
		}
		res.Connected += r.Connected
		res.Errors += r.Errors
		if r.FirstError != "" && res.FirstError == "" {
			res.FirstError = r.FirstError
		}
	}
	res.DialSeconds = time.Since(t0).Seconds()
	// Give the server a moment to finish setting the connections up.
	time.Sleep(time.Second)
	if !s.alive() {
		return res, fmt.Errorf("server died holding %d connections (see %s)", res.Connected, s.logPath)
	}
	if res.RSSAfterKiB, err = procstat.RSSKiB(s.pid); err != nil {
		return res, err
	}
	res.GoroutinesAfter, _ = procstat.Goroutines(s.base())
	// After RSS: this one runs a GC in the server.
	heap1, stack1, _ := procstat.Live(s.base())
	res.LiveAfterBytes = heap1 + stack1
	if res.Connected > 0 {
		if heap0 > 0 && heap1 > 0 {
			res.LivePerConnKiB = float64(res.LiveAfterBytes-res.LiveBeforeBytes) / 1024 / float64(res.Connected)
			res.HeapPerConnKiB = float64(heap1-heap0) / 1024 / float64(res.Connected)
			res.StackPerConnKiB = float64(stack1-stack0) / 1024 / float64(res.Connected)
		}
		res.RSSPerConnKiB = float64(res.RSSAfterKiB-res.RSSBeforeKiB) / float64(res.Connected)
		if res.GoroutinesBefore > 0 && res.GoroutinesAfter > 0 {
			res.GoroutinesPerConn = float64(res.GoroutinesAfter-res.GoroutinesBefore) / float64(res.Connected)
		}
	}
	if res.Connected < n {
		return res, fmt.Errorf("only %d of %d connections opened: %s", res.Connected, n, res.FirstError)
	}
	if during != nil {
		if err := during(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// ---- helpers ----

func defaultCPUs() (server, load string) {
	n := runtime.NumCPU()
	if n < 2 {
		return "", ""
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return "", ""
	}
	half := n / 2
	server = cpuRange(0, half-1)
	load = cpuRange(half, n-1)
	return server, load
}

func cpuRange(a, b int) string {
	if a == b {
		return strconv.Itoa(a)
	}
	return fmt.Sprintf("%d-%d", a, b)
}

// cpuCount counts the CPUs of a taskset list like "0-3,6"; 0 for "".
func cpuCount(list string) int {
	if list == "" {
		return runtime.NumCPU()
	}
	n := 0
	for _, part := range strings.Split(list, ",") {
		if a, b, ok := strings.Cut(part, "-"); ok {
			x, y := parseInt(a), parseInt(b)
			n += y - x + 1
		} else {
			parseInt(part)
			n++
		}
	}
	return n
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

func parseInts(s string) []int {
	if strings.TrimSpace(s) == "none" {
		return nil
	}
	var out []int
	for _, f := range splitList(s) {
		out = append(out, parseInt(f))
	}
	return out
}

func parseInt(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		fail("not a number: %q", s)
	}
	return n
}

func parseDur(s, def string) time.Duration {
	if s == "" {
		s = def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		// Accept a bare number of seconds too.
		if f, ferr := strconv.ParseFloat(s, 64); ferr == nil {
			return time.Duration(f * float64(time.Second))
		}
		fail("not a duration: %q", s)
	}
	return d
}

func pick(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "compare: "+format+"\n", a...)
	os.Exit(2)
}

// rerender is -render: results.md and charts from an earlier results.json.
func rerender(path string, o options) {
	b, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		fail("%s: %v", path, err)
	}
	if o.notesPath != "" {
		if b, err := os.ReadFile(o.notesPath); err == nil {
			rep.memoryNotes = string(b)
		}
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		fail("%v", err)
	}
	rep.finish() // again: the rule for picking the median may have changed
	// Failures of the charts are added again if they recur.
	rep.Failures = slices.DeleteFunc(rep.Failures, func(f string) bool { return strings.HasPrefix(f, "charts: ") })
	if err := writeReport(o, &rep); err != nil {
		fail("writing the report: %v", err)
	}
	logf("wrote %s", filepath.Join(o.outDir, "results.md"))
}
