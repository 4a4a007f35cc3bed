package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is everything one run measured; results.json is this value.
type Report struct {
	Started     time.Time         `json:"started"`
	WallSeconds float64           `json:"wall_seconds"`
	Env         []KV              `json:"env"`
	Libs        []string          `json:"libs"`
	Duration    string            `json:"duration"`
	Warmup      string            `json:"warmup"`
	Rounds      int               `json:"rounds"`
	Echo        []*EchoScenario   `json:"echo"`
	Idle        map[string]*Entry `json:"idle"`
	Upgrade     map[string]*Entry `json:"upgrade"`
	// Memory is the heap profile of idle connections, by library.
	Memory map[string]*MemProfile `json:"memory,omitempty"`
	// Syscalls is what each library's server asked of the kernel per
	// operation, by scenario name ("upgrade" for upgrades), then library.
	Syscalls map[string]map[string]*Syscalls `json:"syscalls,omitempty"`
	Failures []string                        `json:"failures"`
	Charts   []string                        `json:"charts"`

	byName      map[string]*EchoScenario
	memoryNotes string // bench/memory-notes.md, appended to the memory section
}

// KV is one line of the environment description.
type KV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// EchoScenario is one message size × connection count.
type EchoScenario struct {
	Name    string            `json:"name"`
	Size    int               `json:"size"`
	Conns   int               `json:"conns"`
	Results map[string]*Entry `json:"results"`
}

// Entry is one library's result in one scenario: every run of it, and the
// run with the median figure, or why there is none.
type Entry struct {
	Result Run      `json:"result"`
	Runs   []Run    `json:"runs"`
	Errors []string `json:"errors,omitempty"`
	Error  string   `json:"error,omitempty"` // set when no run succeeded
	// Spread is (max − min) / median of the main figure over the runs the
	// median was taken from.
	Spread float64 `json:"spread,omitempty"`
	// Quiet is how many runs had no more than noisyCPUs of background: the
	// median is taken over those when there are any.
	Quiet int `json:"quiet_runs"`
}

func (e *Entry) add(run Run, err error) {
	if err != nil {
		e.Errors = append(e.Errors, err.Error())
		if len(e.Runs) == 0 {
			e.Result = run // keep whatever was measured, for the record
		}
		return
	}
	e.Runs = append(e.Runs, run)
}

// settle picks the median run by key: of the quiet runs (no more than
// noisyCPUs of background) when there are any, of all of them otherwise. A
// round that ran while something else loaded the machine would otherwise
// pull the median of three down with it.
func (e *Entry) settle(key func(Run) float64) {
	if len(e.Runs) == 0 {
		if len(e.Errors) > 0 {
			e.Error = e.Errors[0]
		} else {
			e.Error = "no run"
		}
		return
	}
	var runs []Run
	for _, r := range e.Runs {
		if r.BackgroundCPUs <= noisyCPUs {
			runs = append(runs, r)
		}
	}
	e.Quiet = len(runs)
	if len(runs) == 0 {
		runs = append(runs, e.Runs...)
	}
	slices.SortFunc(runs, func(a, b Run) int { return cmp.Compare(key(a), key(b)) })
	e.Result = runs[(len(runs)-1)/2]
	if m := key(e.Result); m > 0 && len(runs) > 1 {
		e.Spread = (key(runs[len(runs)-1]) - key(runs[0])) / m
	}
}

func (r *Report) entry(m *map[string]*Entry, lib string) *Entry {
	if *m == nil {
		*m = map[string]*Entry{}
	}
	e := (*m)[lib]
	if e == nil {
		e = &Entry{}
		(*m)[lib] = e
	}
	return e
}

func (r *Report) addEcho(name string, size, conns int, lib string, run Run, err error) {
	if r.byName == nil {
		r.byName = map[string]*EchoScenario{}
	}
	sc := r.byName[name]
	if sc == nil {
		sc = &EchoScenario{Name: name, Size: size, Conns: conns}
		r.byName[name] = sc
		r.Echo = append(r.Echo, sc)
	}
	r.entry(&sc.Results, lib).add(run, err)
}

func (r *Report) addSyscalls(name, lib string, c *Syscalls) {
	if r.Syscalls == nil {
		r.Syscalls = map[string]map[string]*Syscalls{}
	}
	if r.Syscalls[name] == nil {
		r.Syscalls[name] = map[string]*Syscalls{}
	}
	r.Syscalls[name][lib] = c
}

func (r *Report) addIdle(lib string, run Run, err error)    { r.entry(&r.Idle, lib).add(run, err) }
func (r *Report) addUpgrade(lib string, run Run, err error) { r.entry(&r.Upgrade, lib).add(run, err) }

// finish picks every entry's median run.
func (r *Report) finish() {
	for _, sc := range r.Echo {
		for _, e := range sc.Results {
			e.settle(func(r Run) float64 { return r.MsgsPerSec })
		}
	}
	for _, e := range r.Idle {
		e.settle(func(r Run) float64 { return r.RSSPerConnKiB })
	}
	for _, e := range r.Upgrade {
		e.settle(func(r Run) float64 { return r.UpgradesPerSec })
	}
}

// describeEnv records what the numbers depend on.
func describeEnv(o options) []KV {
	var env []KV
	add := func(k, v string) { env = append(env, KV{k, v}) }
	add("date", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	add("cpu", fmt.Sprintf("%s, %d logical CPUs", cpuModel(), runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		add("kernel", "Linux "+strings.TrimSpace(string(b)))
	}
	if o.serverCPUs != "" {
		add("pinning", fmt.Sprintf("servers on CPU %s, load generator on CPU %s (taskset)", o.serverCPUs, o.loadCPUs))
	} else {
		add("pinning", "none: servers and load generator share all CPUs")
	}
	add("GOMAXPROCS (Go servers)", fmt.Sprint(o.gomaxprocs))
	if o.rounds > 1 {
		add("rounds", fmt.Sprintf("%d, library order rotated each round; figures are the median round", o.rounds))
	}
	add("echo runs", fmt.Sprintf("%s measured after %s warm-up, closed loop (one message in flight per connection), binary messages", o.duration, o.warmup))
	if o.idleConns > 0 {
		add("idle test", fmt.Sprintf("%d connections, measured 1 s after the last one opened, on a fresh server process", o.idleConns))
	}
	if o.upgradeParallel > 0 {
		add("upgrade test", fmt.Sprintf("%d parallel workers for %s: connect, handshake, close handshake, server hangs up", o.upgradeParallel, o.upgradeDuration))
	}

	if out, err := exec.Command(o.serverBin, "-versions").Output(); err == nil {
		var v map[string]string
		if json.Unmarshal(out, &v) == nil {
			add("Go", v["go"])
			add("gin", v["gin"])
			for _, lib := range allLibs {
				if s, ok := v[lib]; ok && contains(o.libs, lib) {
					if d := os.Getenv("BENCH_GINWS_DESC"); isGinws(lib) && d != "" {
						s += ", " + d
					}
					add(lib, s)
				}
			}
		}
	}
	if contains(o.libs, "fastify") {
		if out, err := exec.Command("node", "--version").Output(); err == nil {
			add("Node.js", strings.TrimSpace(string(out)))
		}
		var parts []string
		for _, pkg := range []string{"fastify", "@fastify/websocket", "ws", "bufferutil"} {
			b, err := os.ReadFile(filepath.Join(o.nodeDir, "node_modules", pkg, "package.json"))
			if err != nil {
				continue
			}
			var p struct{ Version string }
			if json.Unmarshal(b, &p) == nil {
				parts = append(parts, pkg+" "+p.Version)
			}
		}
		add("fastify", strings.Join(parts, ", "))
	}
	return env
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// ---- Markdown ----

func writeReport(o options, r *Report) error {
	charts, err := writeCharts(o.outDir, r)
	if err != nil {
		r.Failures = append(r.Failures, "charts: "+err.Error())
	}
	r.Charts = charts

	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.outDir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.outDir, "results.md"), []byte(markdown(r)), 0o644)
}

func markdown(r *Report) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }

	p("# ginws benchmark results\n\n")
	p("Generated by `bash bench/run.sh` (%s). How to read these tables: see [../README.md](../README.md).\n\n", modeWord(r))
	p("| setting | value |\n|---|---|\n")
	for _, kv := range r.Env {
		p("| %s | %s |\n", kv.Key, mdEscape(kv.Value))
	}
	p("| wall time of this run | %.0f s |\n\n", r.WallSeconds)

	if len(r.Failures) > 0 {
		p("## Failures\n\n")
		for _, f := range r.Failures {
			p("- %s\n", mdEscape(f))
		}
		p("\n")
	}

	hasGinws := contains(r.Libs, "ginws")
	if hasGinws && (len(r.Echo) > 0 || r.Upgrade != nil || r.Idle != nil) {
		p("## Summary: each peer relative to ginws\n\n")
		p("Throughput of the peer divided by the throughput of ginws in the same run: **above 1.00× the peer is faster, below it ginws is faster.** ")
		p("The memory column is the other way round: RSS per idle connection of the peer divided by that of ginws, **above 1.00× the peer uses more memory.**\n\n")
		p("| library |")
		for _, sc := range r.Echo {
			p(" %s |", sc.Name)
		}
		if r.Upgrade != nil {
			p(" upgrades/s |")
		}
		if r.Idle != nil {
			p(" RSS/idle conn |")
		}
		p("\n|---|")
		for range r.Echo {
			p("---:|")
		}
		if r.Upgrade != nil {
			p("---:|")
		}
		if r.Idle != nil {
			p("---:|")
		}
		p("\n")
		for _, lib := range r.Libs {
			p("| %s |", lib)
			for _, sc := range r.Echo {
				p(" %s |", ratio(sc.Results[lib], sc.Results["ginws"], msgsPerSec))
			}
			if r.Upgrade != nil {
				p(" %s |", ratio(r.Upgrade[lib], r.Upgrade["ginws"], upgradesPerSec))
			}
			if r.Idle != nil {
				p(" %s |", ratio(r.Idle[lib], r.Idle["ginws"], rssPerConn))
			}
			p("\n")
		}
		p("\n")

		if len(r.Echo) > 0 || r.Upgrade != nil {
			p("Server CPU time per message (per upgrade in the last column) of the peer divided by that of ginws: **above 1.00× the peer spends more CPU.** ")
			p("This figure depends less on the load generator and on other activity of the machine than the throughput does.\n\n")
			p("| library |")
			for _, sc := range r.Echo {
				p(" %s |", sc.Name)
			}
			if r.Upgrade != nil {
				p(" upgrade |")
			}
			p("\n|---|")
			for range r.Echo {
				p("---:|")
			}
			if r.Upgrade != nil {
				p("---:|")
			}
			p("\n")
			for _, lib := range r.Libs {
				p("| %s |", lib)
				for _, sc := range r.Echo {
					p(" %s |", ratio(sc.Results[lib], sc.Results["ginws"], cpuPerOp))
				}
				if r.Upgrade != nil {
					p(" %s |", ratio(r.Upgrade[lib], r.Upgrade["ginws"], cpuPerOp))
				}
				p("\n")
			}
			p("\n")
		}
	}

	spread := r.Rounds > 1
	var noisy, loadBound bool
	mark := func(e *Entry) string {
		var m string
		if e.Result.BackgroundCPUs > noisyCPUs {
			m += " ⚠"
			noisy = true
		}
		if e.Result.LoadBound {
			m += " ‡"
			loadBound = true
		}
		return m
	}
	notes := func() {
		if noisy {
			p("⚠ other processes used more than %.0f%% of a CPU during this run: its figures are less reliable.  \n", noisyCPUs*100)
		}
		if loadBound {
			p("‡ the load generator kept its CPU(s) busy during this run: the server may have had capacity to spare.  \n")
		}
		if noisy || loadBound {
			p("\n")
		}
		noisy, loadBound = false, false
	}

	if len(r.Echo) > 0 {
		p("## Echo\n\n")
		p("Each connection sends a binary message, waits for the whole echo, and sends the next one. ")
		p("messages/s counts round trips of all connections together; MB/s is messages/s × message size (10⁶ bytes, one direction); ")
		p("p50 and p99 are round-trip latencies seen by the load generator; ")
		p("server CPU/msg is the CPU time (user + system) the server process used per round trip.\n\n")
		for _, sc := range r.Echo {
			p("### %s\n\n", sc.Name)
			p("| library | messages/s | MB/s | p50 | p99 | server CPU/msg | messages/s vs ginws |")
			if spread {
				p(" spread |")
			}
			p("\n|---|---:|---:|---:|---:|---:|---:|")
			if spread {
				p("---:|")
			}
			p("\n")
			for _, lib := range r.Libs {
				e := sc.Results[lib]
				if e == nil {
					continue
				}
				if e.Error != "" {
					p("| %s | error | | | | | |%s\n", lib, pick(spread, " |", ""))
					continue
				}
				res := e.Result
				p("| %s | %s%s | %s | %s | %s | %s | %s |", lib, fmtCount(res.MsgsPerSec), mark(e), fmtMB(res.MBPerSec),
					fmtLatency(res.P50us), fmtLatency(res.P99us), fmtCPU(res.ServerCPUPerOpUs),
					ratio(e, sc.Results["ginws"], msgsPerSec))
				if spread {
					p(" %s |", fmtSpread(e))
				}
				p("\n")
			}
			p("\n")
			notes()
			p("![%s](%s)\n\n", sc.Name, echoChartName(sc))
		}
	}

	if r.Idle != nil {
		p("## Idle connections\n\n")
		p("Connections opened and held without traffic. RSS is the server's resident memory (VmRSS) before the first and 1 s after the last connection opened; ")
		p("per connection = (after − before) / connections. Goroutines come from the server's `/debug/goroutines` (n/a for Node). ")
		p("\"vs ginws\" is the peer's RSS per connection divided by ginws's: above 1.00× the peer uses more.\n\n")
		p("*Live heap + stacks* (Go servers only) is what the server's `/debug/live` reports after a forced GC, per connection: the memory the connections keep reachable, ")
		p("without the garbage and headroom of the collector that RSS also holds.\n\n")
		p("| library | connections | RSS before | RSS after | RSS per connection | vs ginws | live heap + stacks per connection | goroutines per connection |")
		if spread {
			p(" spread |")
		}
		p("\n|---|---:|---:|---:|---:|---:|---:|---:|")
		if spread {
			p("---:|")
		}
		p("\n")
		for _, lib := range r.Libs {
			e := r.Idle[lib]
			if e == nil {
				continue
			}
			if e.Error != "" {
				p("| %s | error | | | | | | |%s\n", lib, pick(spread, " |", ""))
				continue
			}
			res := e.Result
			live := "n/a"
			if res.LivePerConnKiB > 0 {
				live = fmt.Sprintf("%.1f KiB", res.LivePerConnKiB)
			}
			p("| %s | %d | %s | %s | %.1f KiB | %s | %s | %s |", lib, res.Connected, fmtKiB(res.RSSBeforeKiB), fmtKiB(res.RSSAfterKiB),
				res.RSSPerConnKiB, ratio(e, r.Idle["ginws"], rssPerConn), live,
				fmtGoroutines(res.GoroutinesPerConn, res.GoroutinesAfter))
			if spread {
				p(" %s |", fmtSpread(e))
			}
			p("\n")
		}
		p("\n![idle RSS per connection](idle_rss_per_conn.png)\n\n")
	}

	if r.Upgrade != nil {
		p("## Upgrades\n\n")
		p("Parallel workers each open a TCP connection, do the WebSocket handshake, send a close frame, read the server's close frame and wait for the server to hang up, then start again. ")
		p("p50 and p99 are the durations of that whole cycle; server CPU/upgrade is the server's CPU time per cycle.\n\n")
		p("| library | upgrades/s | p50 | p99 | server CPU/upgrade | upgrades/s vs ginws |")
		if spread {
			p(" spread |")
		}
		p("\n|---|---:|---:|---:|---:|---:|")
		if spread {
			p("---:|")
		}
		p("\n")
		for _, lib := range r.Libs {
			e := r.Upgrade[lib]
			if e == nil {
				continue
			}
			if e.Error != "" {
				p("| %s | error | | | | |%s\n", lib, pick(spread, " |", ""))
				continue
			}
			res := e.Result
			p("| %s | %s%s | %s | %s | %s | %s |", lib, fmtCount(res.UpgradesPerSec), mark(e), fmtLatency(res.P50us), fmtLatency(res.P99us),
				fmtCPU(res.ServerCPUPerOpUs), ratio(e, r.Upgrade["ginws"], upgradesPerSec))
			if spread {
				p(" %s |", fmtSpread(e))
			}
			p("\n")
		}
		p("\n")
		notes()
		p("![upgrades per second](upgrades_per_sec.png)\n\n")
	}
	if r.Syscalls != nil {
		syscallMarkdown(r, p)
	}
	cpuSplitMarkdown(r, p)
	if contains(r.Charts, "echo_vs_ginws.png") {
		p("## All echo scenarios relative to ginws\n\n![echo throughput relative to ginws](echo_vs_ginws.png)\n\n")
	}
	if r.Memory != nil {
		b.WriteString(memoryMarkdown(r, r.memoryNotes))
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// fmtSpread is the spread column: ± half the range over the runs the median
// came from, and how many of the runs those were when some were noisy.
func fmtSpread(e *Entry) string {
	s := fmt.Sprintf("±%.0f%%", e.Spread*50)
	if e.Quiet == 1 {
		s = "—" // one run: no spread to speak of
	}
	switch {
	case e.Quiet == 0:
		s += fmt.Sprintf(" (all %d noisy)", len(e.Runs))
	case e.Quiet < len(e.Runs):
		s += fmt.Sprintf(" (%d of %d quiet)", e.Quiet, len(e.Runs))
	}
	return s
}

func msgsPerSec(e *Entry) float64     { return e.Result.MsgsPerSec }
func upgradesPerSec(e *Entry) float64 { return e.Result.UpgradesPerSec }
func rssPerConn(e *Entry) float64     { return e.Result.RSSPerConnKiB }
func cpuPerOp(e *Entry) float64       { return e.Result.ServerCPUPerOpUs }

func fmtCPU(us float64) string {
	if us <= 0 {
		return "—"
	}
	if us < 10 {
		return fmt.Sprintf("%.2f µs", us)
	}
	return fmt.Sprintf("%.1f µs", us)
}

func modeWord(r *Report) string {
	w := fmt.Sprintf("%s runs, %s warm-up", r.Duration, r.Warmup)
	if r.Rounds > 1 {
		w += fmt.Sprintf(", median of %d rounds", r.Rounds)
	}
	return w
}

func ratio(e, base *Entry, f func(*Entry) float64) string {
	if e == nil || base == nil || e.Error != "" || base.Error != "" {
		return "—"
	}
	b := f(base)
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", f(e)/b)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func fmtCount(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	// thousands separators
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func fmtMB(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtLatency(us float64) string {
	switch {
	case us <= 0:
		return "—"
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	default:
		return fmt.Sprintf("%.2f ms", us/1000)
	}
}

func fmtKiB(k int64) string {
	return fmt.Sprintf("%.1f MiB", float64(k)/1024)
}

func fmtGoroutines(perConn float64, after int) string {
	if after <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", perConn)
}

func fmtSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
