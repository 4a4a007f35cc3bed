package main

// The memory profile of idle connections: a fresh Go server with every
// allocation recorded (-memprofilerate 1) takes a heap profile before and
// while it holds the idle connections; the difference, by allocation site,
// divided by the connections, is what one idle connection keeps on the heap.
// Goroutine stacks are not in a heap profile: they come from /debug/live.

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ginws/ginws/bench/internal/procstat"
	"github.com/google/pprof/profile"
)

// MemProfile is where one idle connection's memory goes, for one library.
type MemProfile struct {
	Conns int `json:"conns"`
	// RSSPerConnB is the RSS growth per connection of the profiled server
	// (which records every allocation, so it is a little above the idle
	// test's figure).
	RSSPerConnB float64 `json:"rss_per_conn_bytes"`
	// HeapPerConnB is the growth of the in-use heap in the profile, per
	// connection: the sum of Sites.
	HeapPerConnB float64 `json:"heap_per_conn_bytes"`
	// StackPerConnB is the growth of goroutine stack memory in use.
	StackPerConnB     float64   `json:"stack_per_conn_bytes"`
	GoroutinesPerConn float64   `json:"goroutines_per_conn"`
	Sites             []MemSite `json:"sites"`
	// OwnSites are the allocations of the library's own code, by line.
	OwnSites []MemSite `json:"own_sites"`
	// Profiles are the two heap profiles, relative to the output directory.
	Profiles []string `json:"profiles"`
}

// MemSite is one allocation site: the function that allocated and the chain
// of callers that makes it recognisable.
type MemSite struct {
	Site           string  `json:"site"`
	From           string  `json:"from"`
	BytesPerConn   float64 `json:"bytes_per_conn"`
	ObjectsPerConn float64 `json:"objects_per_conn"`
}

// profileIdle runs the memory profile of lib with n idle connections.
func profileIdle(o options, lib string, n int) (*MemProfile, error) {
	srv, err := startServerAt(o, lib, "profile", "127.0.0.1:0", "-pprof", "-memprofilerate", "1")
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	heapURL := srv.base() + "/debug/pprof/heap?gc=1"
	base, err := procstat.Get(heapURL)
	if err != nil {
		return nil, err
	}
	_, stack0, err := procstat.Live(srv.base())
	if err != nil {
		return nil, err
	}
	var after []byte
	var stack1 int64
	res, err := runIdle(o, srv, n, func() error {
		var err error
		if after, err = procstat.Get(heapURL); err != nil {
			return err
		}
		_, stack1, err = procstat.Live(srv.base())
		return err
	})
	if err != nil {
		return nil, err
	}
	mp := &MemProfile{Conns: res.Connected, RSSPerConnB: res.RSSPerConnKiB * 1024, GoroutinesPerConn: res.GoroutinesPerConn}
	mp.StackPerConnB = float64(stack1-stack0) / float64(res.Connected)
	for _, f := range []struct {
		name string
		data []byte
	}{{lib + "-idle-heap-before.pb.gz", base}, {lib + "-idle-heap-after.pb.gz", after}} {
		rel := filepath.Join("logs", f.name)
		if err := os.WriteFile(filepath.Join(o.outDir, rel), f.data, 0o644); err == nil {
			mp.Profiles = append(mp.Profiles, rel)
		}
	}
	sites, err := siteDiff(base, after, siteOf)
	if err != nil {
		return nil, err
	}
	for _, s := range sites {
		s.BytesPerConn /= float64(res.Connected)
		s.ObjectsPerConn /= float64(res.Connected)
		mp.HeapPerConnB += s.BytesPerConn
		mp.Sites = append(mp.Sites, s)
	}
	lines, err := siteDiff(base, after, func(s *profile.Sample) (string, string, bool) { return ownSiteOf(s, ownPackages[lib]) })
	if err != nil {
		return nil, err
	}
	for _, s := range lines {
		s.BytesPerConn /= float64(res.Connected)
		s.ObjectsPerConn /= float64(res.Connected)
		mp.OwnSites = append(mp.OwnSites, s)
	}
	return mp, nil
}

// ownPackages are the (shortened) package names of each library's code.
var ownPackages = map[string][]string{
	"ginws":        {"ginws.", "stream.", "frame.", "rbuf.", "pool."},
	"ginws-events": {"ginws.", "stream.", "frame.", "rbuf.", "pool."},
	"gorilla":      {"websocket."},
	"coder":        {"websocket.", "wsjson.", "errd.", "bpool."},
	"gws":          {"gws.", "internal."},
	"melody":       {"melody.", "websocket."},
	"gobwas":       {"main.", "ws.", "wsutil."},
}

// siteDiff returns the in-use bytes and objects of every allocation site in
// after minus those in before, largest first.
func siteDiff(before, after []byte, key func(*profile.Sample) (site, from string, ok bool)) ([]MemSite, error) {
	sum := map[[2]string]*MemSite{}
	for sign, data := range map[float64][]byte{-1: before, 1: after} {
		p, err := profile.Parse(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		iObj, iSpace := -1, -1
		for i, st := range p.SampleType {
			switch st.Type {
			case "inuse_objects":
				iObj = i
			case "inuse_space":
				iSpace = i
			}
		}
		if iObj < 0 || iSpace < 0 {
			return nil, fmt.Errorf("not a heap profile")
		}
		for _, s := range p.Sample {
			site, from, ok := key(s)
			if !ok {
				continue
			}
			k := [2]string{site, from}
			m := sum[k]
			if m == nil {
				m = &MemSite{Site: site, From: from}
				sum[k] = m
			}
			m.BytesPerConn += sign * float64(s.Value[iSpace])
			m.ObjectsPerConn += sign * float64(s.Value[iObj])
		}
	}
	var out []MemSite
	for _, m := range sum {
		if m.BytesPerConn > 0 {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, func(a, b MemSite) int {
		return cmp.Or(cmp.Compare(b.BytesPerConn, a.BytesPerConn), cmp.Compare(a.Site, b.Site), cmp.Compare(a.From, b.From))
	})
	return out, nil
}

// siteOf names the allocation site of a sample: the innermost function
// outside the runtime (a goroutine's descriptor, allocated by runtime.newproc
// for a go statement, is named "go statement"), and up to three callers that
// are in other functions, to tell apart the same site reached from different
// places.
func siteOf(s *profile.Sample) (site, from string, ok bool) {
	frames, _ := stack(s)
	i := 0
	goStmt := false
	for i < len(frames) && strings.HasPrefix(frames[i], "runtime.") {
		if frames[i] == "runtime.newproc" || frames[i] == "runtime.malg" {
			goStmt = true
		}
		i++
	}
	if i == len(frames) {
		switch {
		case len(frames) == 0:
			return "?", "", true
		case goStmt:
			// The traceback of runtime.newproc stops at systemstack.
			return "runtime.malg (goroutine descriptor g)", "", true
		}
		return frames[len(frames)-1], "", true
	}
	site = short(frames[i])
	if goStmt {
		site = "goroutine (g) ← go statement in " + site
	}
	var callers []string
	last := frames[i]
	for _, f := range frames[i+1:] {
		if len(callers) == 3 {
			break
		}
		if f == last || strings.HasPrefix(f, "runtime.") {
			continue
		}
		callers = append(callers, short(f))
		last = f
	}
	return site, strings.Join(callers, " ← "), true
}

// stack returns the function names of a sample's frames, innermost first
// (inlined calls included), and the file:line of each.
func stack(s *profile.Sample) (frames, where []string) {
	for _, loc := range s.Location {
		for _, l := range loc.Line { // innermost (inlined) first
			if l.Function != nil {
				frames = append(frames, l.Function.Name)
				where = append(where, fmt.Sprintf("%s:%d", filepath.Base(l.Function.Filename), l.Line))
			}
		}
	}
	return frames, where
}

// ownSiteOf names an allocation by the innermost line of the library's own
// code on its stack (from: the function below it that allocated, when that
// is not the library's); ok is false for allocations the library's code did
// not ask for.
func ownSiteOf(s *profile.Sample, own []string) (site, from string, ok bool) {
	frames, where := stack(s)
	for i, f := range frames {
		f = short(f)
		if !slices.ContainsFunc(own, func(p string) bool { return strings.HasPrefix(f, p) }) {
			continue
		}
		site = f + " (" + where[i] + ")"
		for j := i - 1; j >= 0; j-- {
			if !strings.HasPrefix(frames[j], "runtime.") {
				from = short(frames[j])
				break
			}
		}
		if from == "" && i > 0 {
			from = short(frames[0])
		}
		return site, from, true
	}
	return "", "", false
}

// short drops the module path of a function name:
// github.com/ginws/ginws/ginws.newConn → ginws.newConn.
func short(fn string) string {
	return fn[strings.LastIndexByte(fn, '/')+1:]
}

// printHeapDiff is -heap-diff: the site table of two profiles on stdout.
func printHeapDiff(arg string, conns int) {
	a, b, ok := strings.Cut(arg, ",")
	if !ok {
		fail("-heap-diff wants BEFORE,AFTER")
	}
	before, err := os.ReadFile(a)
	if err != nil {
		fail("%v", err)
	}
	after, err := os.ReadFile(b)
	if err != nil {
		fail("%v", err)
	}
	key := siteOf
	if own := os.Getenv("HEAP_OWN"); own != "" {
		key = func(s *profile.Sample) (string, string, bool) { return ownSiteOf(s, ownPackages[own]) }
	}
	sites, err := siteDiff(before, after, key)
	if err != nil {
		fail("%v", err)
	}
	var total float64
	for _, s := range sites {
		total += s.BytesPerConn
	}
	fmt.Printf("%10s %8s  %s\n", "B/conn", "obj/conn", "site ← callers")
	for _, s := range sites {
		fmt.Printf("%10.1f %8.2f  %s ← %s\n", s.BytesPerConn/float64(conns), s.ObjectsPerConn/float64(conns), s.Site, s.From)
	}
	fmt.Printf("%10.1f           total\n", total/float64(conns))
}

// memCategories group allocation sites into what a reader recognises, in
// the order of the comparison table.
var memCategories = []string{
	"net/http read buffer (bufio.Reader)",
	"net/http write buffer (bufio.Writer)",
	"net/http connection and request (headers, URL, contexts, fd)",
	"gin.Context",
	"the library's connection",
	"goroutine descriptors (g)",
	"other",
}

func categoryOf(lib string, s MemSite) string {
	own := func(x string) bool {
		for _, part := range strings.Split(x, " ← ") {
			if slices.ContainsFunc(ownPackages[lib], func(p string) bool { return strings.HasPrefix(part, p) }) {
				return true
			}
		}
		return false
	}
	switch {
	case strings.HasPrefix(s.Site, "bufio.NewReaderSize") && strings.Contains(s.From, "http.newBufioReader"):
		return memCategories[0]
	case strings.HasPrefix(s.Site, "bufio.NewWriterSize") && strings.Contains(s.From, "http.newBufioWriterSize"):
		return memCategories[1]
	case strings.HasPrefix(s.Site, "runtime.malg"):
		return memCategories[5]
	case own(s.Site) || own(s.From):
		return memCategories[4]
	case strings.HasPrefix(s.Site, "gin."):
		return memCategories[3]
	}
	for _, p := range []string{"http.", "textproto.", "url.", "context.", "net.", "syscall.", "poll.", "sync.", "bufio."} {
		if strings.HasPrefix(s.Site, p) {
			return memCategories[2]
		}
	}
	return memCategories[6]
}

// memoryMarkdown is the "Memory per idle connection" section of results.md.
func memoryMarkdown(r *Report, notes string) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	var libs []string
	for _, lib := range r.Libs {
		if r.Memory[lib] != nil {
			libs = append(libs, lib)
		}
	}
	if len(libs) == 0 {
		return ""
	}
	n := r.Memory[libs[0]].Conns
	p("## Memory per idle connection\n\n")
	p("Where an idle connection's memory goes. Each Go server runs once more, fresh, with `-pprof -memprofilerate 1` (every allocation recorded), ")
	p("and takes a heap profile (`/debug/pprof/heap?gc=1`, inuse_space) before the first and while it holds %d idle connections; ", n)
	p("the difference, by allocation site, divided by the connections, is what one connection keeps on the heap. ")
	p("Goroutine stacks are not in a heap profile: they are the growth of StackInuse (`/debug/live`). ")
	p("The rest of RSS is the collector's headroom (the heap may grow to twice its live size between collections), freed spans not yet returned to the OS and the runtime's own bookkeeping. ")
	p("The profiles are in `logs/` (`go tool pprof -sample_index=inuse_space -diff_base logs/LIB-idle-heap-before.pb.gz logs/LIB-idle-heap-after.pb.gz`).\n\n")

	p("| per connection | %s |\n|---|", strings.Join(libs, " | "))
	for range libs {
		p("---:|")
	}
	p("\n")
	row := func(name string, f func(*MemProfile) string) {
		p("| %s |", name)
		for _, lib := range libs {
			p(" %s |", f(r.Memory[lib]))
		}
		p("\n")
	}
	cat := func(m *MemProfile, lib, c string) float64 {
		var sum float64
		for _, s := range m.Sites {
			if categoryOf(lib, s) == c {
				sum += s.BytesPerConn
			}
		}
		return sum
	}
	for _, c := range memCategories {
		p("| %s |", c)
		for _, lib := range libs {
			p(" %s |", fmtBytes(cat(r.Memory[lib], lib, c)))
		}
		p("\n")
	}
	// Stacks and RSS come from the idle test's server, which does not
	// record allocations: recording them runs on the goroutine's stack and
	// can make it grow (gorilla's idle stack doubles under the profiler).
	idle := func(lib string) *Run {
		// LiveAfterBytes: the idle test read /debug/live (a Go server).
		// Not StackPerConnKiB > 0: an event-driven connection has no stack.
		if e := r.Idle[lib]; e != nil && e.Error == "" && e.Result.LiveAfterBytes > 0 {
			return &e.Result
		}
		return nil
	}
	stackB := func(lib string) float64 {
		if run := idle(lib); run != nil {
			return run.StackPerConnKiB * 1024
		}
		return r.Memory[lib].StackPerConnB
	}
	rssB := func(lib string) float64 {
		if run := idle(lib); run != nil {
			return run.RSSPerConnKiB * 1024
		}
		return r.Memory[lib].RSSPerConnB
	}
	rowLib := func(name string, f func(lib string, m *MemProfile) string) {
		p("| %s |", name)
		for _, lib := range libs {
			p(" %s |", f(lib, r.Memory[lib]))
		}
		p("\n")
	}
	row("**heap (sum of the above)**", func(m *MemProfile) string { return "**" + fmtBytes(m.HeapPerConnB) + "**" })
	rowLib("goroutine stacks¹", func(lib string, m *MemProfile) string { return fmtBytes(stackB(lib)) })
	row("goroutines", func(m *MemProfile) string { return fmt.Sprintf("%.2f", m.GoroutinesPerConn) })
	rowLib("**heap + stacks**", func(lib string, m *MemProfile) string { return "**" + fmtBytes(m.HeapPerConnB+stackB(lib)) + "**" })
	rowLib("RSS per connection¹", func(lib string, m *MemProfile) string { return fmtBytes(rssB(lib)) })
	rowLib("RSS − (heap + stacks): GC headroom, free spans, runtime", func(lib string, m *MemProfile) string {
		return fmtBytes(rssB(lib) - m.HeapPerConnB - stackB(lib))
	})
	p("\n¹ from the idle test above (median run), whose server does not record allocations: recording them runs on the connection's goroutine and can make its stack grow ")
	p("(stacks under the profiler: %s).\n\n", func() string {
		var parts []string
		for _, lib := range libs {
			parts = append(parts, fmt.Sprintf("%s %s", lib, fmtBytes(r.Memory[lib].StackPerConnB)))
		}
		return strings.Join(parts, ", ")
	}())

	for _, lib := range libs {
		m := r.Memory[lib]
		p("### %s: largest allocation sites\n\n", lib)
		p("| bytes/conn | objects/conn | allocated in | called from |\n|---:|---:|---|---|\n")
		var rest, restObj float64
		shown := 0
		for _, s := range m.Sites {
			if shown < 12 && s.BytesPerConn >= 16 {
				p("| %s | %.2f | `%s` | %s |\n", fmtBytes(s.BytesPerConn), s.ObjectsPerConn, s.Site, fmtFrom(s.From))
				shown++
				continue
			}
			rest += s.BytesPerConn
			restObj += s.ObjectsPerConn
		}
		p("| %s | %.2f | all other sites | |\n", fmtBytes(rest), restObj)
		p("| **%s** | | **total heap** | |\n\n", fmtBytes(m.HeapPerConnB))
		if isGinws(lib) && len(m.OwnSites) > 0 {
			p("ginws's own code, by line (what each line allocates, directly or through the function in the last column):\n\n")
			p("| bytes/conn | objects/conn | line | allocating function |\n|---:|---:|---|---|\n")
			for _, s := range m.OwnSites {
				if s.BytesPerConn < 8 {
					continue
				}
				p("| %s | %.2f | `%s` | %s |\n", fmtBytes(s.BytesPerConn), s.ObjectsPerConn, s.Site, fmtFrom(s.From))
			}
			p("\n")
		}
	}
	if notes != "" {
		p("### What would reduce it further\n\n%s\n", strings.TrimSpace(notes))
	}
	return b.String()
}

func fmtFrom(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}

// fmtBytes prints a per-connection size: bytes below 10 KiB, KiB above.
func fmtBytes(v float64) string {
	switch {
	case v >= 10*1024 || v <= -10*1024:
		return fmt.Sprintf("%.1f KiB", v/1024)
	case v >= 1024 || v <= -1024:
		return fmt.Sprintf("%.2f KiB", v/1024)
	}
	return fmt.Sprintf("%.0f B", v)
}
