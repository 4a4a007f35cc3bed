package conformance

// Section 9: large messages, many fragments, many messages, and the
// payload limit (16 MiB: a message of exactly maxPayload bytes is echoed, a
// larger one gets 1009, and a header announcing a larger frame gets 1009
// before any payload arrives).

import (
	"fmt"
	"time"
)

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func largeRows() []caseRow {
	var rows []caseRow
	add := func(r caseRow) {
		if r.timeout == 0 {
			r.timeout = 60 * time.Second
		}
		rows = append(rows, r)
	}
	kinds := []struct {
		name string
		op   byte
	}{{"text", opText}, {"binary", opBinary}}
	payload := func(op byte, n int) []byte { return cachedPayload(op == opText, n) }
	msg := func(op byte, p []byte) frame { return frame{fin: true, op: op, payload: p} }
	echo := func(op byte, p []byte) expect { return expect{kind: expMessage, op: op, payload: p} }

	// 9.1, 9.2: one frame of 64 KiB .. 16 MiB.
	for ki, k := range kinds {
		for i, n := range []int{64 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20, 16 << 20} {
			add(caseRow{id: fmt.Sprintf("9.%d.%d", ki+1, i+1), desc: fmt.Sprintf("%s %s in one frame", k.name, sizeName(n)),
				build: func(r *caseRow) {
					p := payload(k.op, n)
					r.send, r.want = S(f(msg(k.op, p))), W(echo(k.op, p))
				}})
		}
	}
	// 9.3, 9.4: a 4 MiB message in fragments of 64 B .. 4 MiB.
	for ki, k := range kinds {
		for i, fs := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20} {
			add(caseRow{id: fmt.Sprintf("9.%d.%d", ki+3, i+1), desc: fmt.Sprintf("%s 4MiB in %s fragments", k.name, sizeName(fs)),
				build: func(r *caseRow) {
					p := payload(k.op, 4<<20)
					r.send, r.want = S(rawFrames(fragmentsOf(k.op, p, fs)...)), W(echo(k.op, p))
				}})
		}
	}
	// 9.5, 9.6: a 1 MiB frame written in chunks of 64 B .. 2 KiB.
	for ki, k := range kinds {
		for i, cs := range []int{64, 128, 256, 512, 1 << 10, 2 << 10} {
			add(caseRow{id: fmt.Sprintf("9.%d.%d", ki+5, i+1), desc: fmt.Sprintf("%s 1MiB frame in %s writes", k.name, sizeName(cs)),
				build: func(r *caseRow) {
					p := payload(k.op, 1<<20)
					r.send, r.want = S(chopped(msg(k.op, p), cs, 0)), W(echo(k.op, p))
				}})
		}
	}
	// 9.7, 9.8: 1000 messages of 0 B .. 4 KiB, pipelined.
	for ki, k := range kinds {
		for i, n := range []int{0, 16, 64, 256, 1 << 10, 4 << 10} {
			add(caseRow{id: fmt.Sprintf("9.%d.%d", ki+7, i+1), desc: fmt.Sprintf("1000 %s messages of %s", k.name, sizeName(n)),
				build: func(r *caseRow) {
					p := payload(k.op, n)
					frs := make([]frame, 1000)
					want := make([]expect, 1000)
					for j := range frs {
						frs[j], want[j] = msg(k.op, p), echo(k.op, p)
					}
					r.send, r.want = S(rawFrames(frs...)), want
				}})
		}
	}

	// 9.9: the payload limit.
	over := maxPayload + 1
	header := func(op byte, fin bool, n uint64) frame {
		return frame{fin: fin, op: op, declared: n, hasDeclared: true}
	}
	limitRows := []caseRow{
		{close: codeTooBig, desc: "text of max+1 bytes in one frame", build: func(r *caseRow) {
			p := makeText(over)
			r.send = S(f(txtB(p)))
		}},
		{close: codeTooBig, desc: "binary of max+1 bytes in one frame", build: func(r *caseRow) {
			r.send = S(f(bin(makeBinary(over))))
		}},
		{desc: "binary of max bytes in 2 fragments is echoed", build: func(r *caseRow) {
			p := payload(opBinary, maxPayload)
			r.send, r.want = S(rawFrames(fragmentsOf(opBinary, p, maxPayload/2)...)), W(echoBin(p))
		}},
		{close: codeTooBig, desc: "binary of max+1 bytes in fragments of max/2, max/2, 1", build: func(r *caseRow) {
			p := makeBinary(over)
			r.send = S(rawFrames(fragmentsOf(opBinary, p, maxPayload/2)...))
		}},
		{close: codeTooBig, desc: "text of max+1 bytes in 4MiB fragments", build: func(r *caseRow) {
			p := makeText(over)
			r.send = S(rawFrames(fragmentsOf(opText, p, 4<<20)...))
		}},
		{close: codeTooBig, desc: "text of max bytes then 1 more byte in a continuation", build: func(r *caseRow) {
			p := payload(opText, maxPayload)
			r.send = S(f(fragment(opText, p, false)), f(fragment(opCont, []byte("x"), true)))
		}},
		// Header only: the server must answer without waiting for payload.
		{close: codeTooBig, desc: "header only: binary announcing 2^40 bytes", timeout: 4 * time.Second,
			send: S(f(header(opBinary, true, 1<<40)))},
		{close: codeTooBig, desc: "header only: text announcing max+1 bytes", timeout: 4 * time.Second,
			send: S(f(header(opText, true, uint64(over))))},
		{close: codeTooBig, desc: "header only: binary announcing 2^63-1 bytes", timeout: 4 * time.Second,
			send: S(f(header(opBinary, true, 1<<63-1)))},
		{close: codeTooBig, desc: "header only: first fragment announcing max+1 bytes", timeout: 4 * time.Second,
			send: S(f(header(opBinary, false, uint64(over))))},
		{close: codeTooBig, desc: "header only: continuation announcing 2^40 bytes after 1KiB", timeout: 4 * time.Second,
			send: S(f(fragment(opBinary, makeBinary(1024), false)), f(header(opCont, true, 1<<40)))},
		{close: codeTooBig, desc: "header only: 16-bit length 65535 after max-1000 bytes", timeout: 20 * time.Second, build: func(r *caseRow) {
			first := payload(opBinary, maxPayload-1000)
			r.send = S(f(fragment(opBinary, first, false)), f(frame{op: opCont, fin: true, lenBits: 16, declared: 65535, hasDeclared: true}))
		}},
	}
	for i, r := range limitRows {
		r.id = fmt.Sprintf("9.9.%d", i+1)
		add(r)
	}
	return rows
}
