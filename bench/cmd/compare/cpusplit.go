package main

import "fmt"

// cpuSplitMarkdown is the section of results.md that splits each library's
// server CPU time per message into user space and kernel, and derives from
// it the most any library making the same system calls could gain over it.
// It is left out for results recorded before the split was measured.
func cpuSplitMarkdown(r *Report, p func(string, ...any)) {
	type column struct {
		name    string
		entries map[string]*Entry
	}
	var cols []column
	for _, sc := range r.Echo {
		cols = append(cols, column{sc.Name, sc.Results})
	}
	if r.Upgrade != nil {
		cols = append(cols, column{"upgrade", r.Upgrade})
	}
	measured := false
	for _, c := range cols {
		for _, e := range c.entries {
			measured = measured || e.Result.ServerSysCPUPerOpUs > 0
		}
	}
	if !measured {
		return
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	table := func(cell func(e *Entry) string) {
		libTable(p, r.Libs, names, func(lib string, i int) string {
			e := cols[i].entries[lib]
			if e == nil || e.Error != "" || e.Result.ServerSysCPUPerOpUs <= 0 {
				return "—"
			}
			return cell(e)
		})
	}

	p("## Where the server's CPU time goes\n\n")
	p("Server CPU time per round trip (per upgrade in the last column) of the median run, user space + kernel, ")
	p("from the process's `utime` and `stime` (`/proc/PID/stat`, 10 ms ticks). User space is the library, gin, net/http and Go's runtime; ")
	p("the kernel part is its system calls (counted above, when `perf` could), and on loopback a write also runs the receiving side's TCP path.\n\n")
	table(func(e *Entry) string {
		res := e.Result
		return fmt.Sprintf("%s + %s", fmtCPU(res.ServerCPUPerOpUs-res.ServerSysCPUPerOpUs), fmtCPU(res.ServerSysCPUPerOpUs))
	})
	p("**The ceiling over each library**: its CPU time ÷ its kernel time. ")
	p("A server making the same system calls as this library at the same cost, and spending nothing at all in user space, would use its kernel time alone; ")
	p("where the server's CPU is what limits throughput (100 connections), such a server could serve at most this many times the library's messages/s. ")
	p("A throughput target above it can only be met with fewer or cheaper system calls, not with faster code.\n\n")
	table(func(e *Entry) string {
		res := e.Result
		return fmt.Sprintf("%.2f× (kernel %.0f%%)", res.ServerCPUPerOpUs/res.ServerSysCPUPerOpUs, 100*res.ServerSysCPUPerOpUs/res.ServerCPUPerOpUs)
	})
}
