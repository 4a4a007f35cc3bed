package conformance

// Rows of sections 1-5 and 7. Section 6 (UTF-8) is in utf8_rows_test.go,
// section 9 (limits and large messages) in large_rows_test.go.

import (
	"bytes"
	"fmt"
	"time"
)

const (
	ms = time.Millisecond
)

func allSections() []section {
	return []section{
		{"1_Framing", framingRows()},
		{"2_PingsPongs", pingRows()},
		{"3_ReservedBits", reservedBitRows()},
		{"4_Opcodes", opcodeRows()},
		{"5_Fragmentation", fragmentationRows()},
		{"6_UTF8", utf8Rows()},
		{"7_CloseHandling", closeRows()},
		{"9_LimitsPerformance", largeRows()},
	}
}

// ---- 1 Framing ----

func framingRows() []caseRow {
	var rows []caseRow
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536}
	for i, n := range sizes {
		p := makeText(n)
		rows = append(rows, caseRow{
			id: fmt.Sprintf("1.1.%d", i+1), desc: fmt.Sprintf("text %d bytes", n),
			send: S(f(txtB(p))), want: W(echoTextB(p)),
		})
	}
	p := makeText(65536)
	rows = append(rows, caseRow{
		id: "1.1.8", desc: "text 65536 bytes chopped in 997-byte writes",
		send: S(chopped(txtB(p), 997, 0)), want: W(echoTextB(p)),
	})
	for i, n := range sizes {
		p := makeBinary(n)
		rows = append(rows, caseRow{
			id: fmt.Sprintf("1.2.%d", i+1), desc: fmt.Sprintf("binary %d bytes", n),
			send: S(f(bin(p))), want: W(echoBin(p)),
		})
	}
	pb := makeBinary(65536)
	rows = append(rows, caseRow{
		id: "1.2.8", desc: "binary 65536 bytes chopped in 997-byte writes",
		send: S(chopped(bin(pb), 997, 0)), want: W(echoBin(pb)),
	})

	// 1.3: length encodings and masking (beyond Autobahn).
	//
	// RFC 6455 5.2 requires the *sender* to use the minimal length encoding,
	// but its ABNF admits non-minimal lengths and it states no duty for the
	// receiver, so both echoing and failing with 1002 are accepted there.
	// A 64-bit length with the most significant bit set is outside the ABNF
	// ("the most significant bit MUST be 0"): 1002.
	hello := []byte("Hello")
	b200 := makeBinary(200)
	b125 := makeBinary(125)
	with := func(fr frame, mod func(*frame)) frame { mod(&fr); return fr }
	rows = append(rows,
		caseRow{id: "1.3.1", desc: "text 5 bytes with 16-bit length (non-minimal)",
			send: S(f(with(txtB(hello), func(x *frame) { x.lenBits = 16 }))), want: W(echoTextB(hello)), orFail: codeProtocol},
		caseRow{id: "1.3.2", desc: "text 5 bytes with 64-bit length (non-minimal)",
			send: S(f(with(txtB(hello), func(x *frame) { x.lenBits = 64 }))), want: W(echoTextB(hello)), orFail: codeProtocol},
		caseRow{id: "1.3.3", desc: "binary 200 bytes with 64-bit length (non-minimal)",
			send: S(f(with(bin(b200), func(x *frame) { x.lenBits = 64 }))), want: W(echoBin(b200)), orFail: codeProtocol},
		caseRow{id: "1.3.4", desc: "binary 125 bytes with 16-bit length (non-minimal)",
			send: S(f(with(bin(b125), func(x *frame) { x.lenBits = 16 }))), want: W(echoBin(b125)), orFail: codeProtocol},
		caseRow{id: "1.3.5", desc: "ping 5 bytes with 16-bit length (non-minimal)",
			send: S(f(with(ping(hello), func(x *frame) { x.lenBits = 16 }))), want: W(pongOf(hello)), orFail: codeProtocol},
		caseRow{id: "1.3.6", desc: "binary with 64-bit length 2^63+5 (MSB set)",
			send: S(f(with(bin(hello), func(x *frame) { x.declared, x.hasDeclared = 1<<63|5, true }))), close: codeProtocol},
		caseRow{id: "1.3.7", desc: "text with 64-bit length 2^63 (MSB set) and no payload",
			send: S(f(with(txt(""), func(x *frame) { x.declared, x.hasDeclared = 1<<63, true }))), close: codeProtocol},
		caseRow{id: "1.3.8", desc: "binary 64-bit length all ones",
			send: S(f(with(bin(nil), func(x *frame) { x.declared, x.hasDeclared = ^uint64(0), true }))), close: codeProtocol},
		caseRow{id: "1.3.9", desc: "unmasked text",
			send: S(f(with(txtB(hello), func(x *frame) { x.unmasked = true }))), close: codeProtocol},
		caseRow{id: "1.3.10", desc: "unmasked empty binary",
			send: S(f(with(bin(nil), func(x *frame) { x.unmasked = true }))), close: codeProtocol},
		caseRow{id: "1.3.11", desc: "unmasked ping",
			send: S(f(with(ping(hello), func(x *frame) { x.unmasked = true }))), close: codeProtocol},
		caseRow{id: "1.3.12", desc: "text then unmasked text",
			send: S(f(txtB(hello)), f(with(txtB(hello), func(x *frame) { x.unmasked = true }))), want: W(echoTextB(hello)), close: codeProtocol},
		caseRow{id: "1.3.13", desc: "unmasked close",
			send: S(f(with(closeF(codeNormal, ""), func(x *frame) { x.unmasked = true }))), close: codeProtocol},
		caseRow{id: "1.3.14", desc: "masking key all zero",
			send: S(f(with(txtB(hello), func(x *frame) { x.zeroKey = true }))), want: W(echoTextB(hello))},
		caseRow{id: "1.3.15", desc: "text 65536 bytes header written byte by byte",
			send: S(splitAt(txtB(p), ms, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)), want: W(echoTextB(p))},
		caseRow{id: "1.3.16", desc: "text 300 bytes written in 1-byte chops",
			send: S(chopped(txtB(makeText(300)), 1, 0)), want: W(echoTextB(makeText(300)))},
		caseRow{id: "1.3.17", desc: "text and binary in one TCP write",
			send: S(rawFrames(txtB(hello), bin(b200))), want: W(echoTextB(hello), echoBin(b200))},
		caseRow{id: "1.3.18", desc: "100 small messages in one TCP write",
			send: S(rawFrames(manyFrames(100)...)), want: manyEchoes(100)},
		caseRow{id: "1.3.19", desc: "binary 130 bytes cut inside the 16-bit length",
			send: S(splitAt(bin(makeBinary(130)), 20*ms, 3)), want: W(echoBin(makeBinary(130)))},
		caseRow{id: "1.3.20", desc: "binary 70000 bytes cut inside the 64-bit length and mask",
			send: S(splitAt(bin(makeBinary(70000)), 20*ms, 5, 12)), want: W(echoBin(makeBinary(70000)))},
	)
	return rows
}

func manyFrames(n int) []frame {
	out := make([]frame, n)
	for i := range out {
		if i%2 == 0 {
			out[i] = txt(fmt.Sprintf("message %d ✓", i))
		} else {
			out[i] = bin([]byte(fmt.Sprintf("binary %d \x00\xff", i)))
		}
	}
	return out
}

func manyEchoes(n int) []expect {
	out := make([]expect, n)
	for i, fr := range manyFrames(n) {
		out[i] = expect{kind: expMessage, op: fr.op, payload: fr.payload}
	}
	return out
}

// ---- 2 Pings and pongs ----

func pingRows() []caseRow {
	hello := []byte("Hello, ginws!")
	binp := []byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff}
	p125 := makeBinary(125)
	p126 := makeBinary(126)
	badUTF8 := []byte{0xce, 0xba, 0xed, 0xa0, 0x80, 0xff}
	var tenPings []frame
	var tenPayloads [][]byte
	for i := 0; i < 10; i++ {
		pl := []byte(fmt.Sprintf("payload-%d", i))
		tenPings = append(tenPings, ping(pl))
		tenPayloads = append(tenPayloads, pl)
	}
	var tenChopped []step
	for _, fr := range tenPings {
		tenChopped = append(tenChopped, chopped(fr, 1, 0))
	}
	return []caseRow{
		{id: "2.1", desc: "ping without payload", send: S(f(ping(nil))), want: W(pongOf([]byte{}))},
		{id: "2.2", desc: "ping with text payload", send: S(f(ping(hello))), want: W(pongOf(hello))},
		{id: "2.3", desc: "ping with binary payload", send: S(f(ping(binp))), want: W(pongOf(binp))},
		{id: "2.4", desc: "ping with 125-byte payload", send: S(f(ping(p125))), want: W(pongOf(p125))},
		{id: "2.5", desc: "ping with 126-byte payload", send: S(f(ping(p126))), close: codeProtocol},
		{id: "2.6", desc: "ping with 125-byte payload chopped in 1-byte writes", send: S(chopped(ping(p125), 1, ms)), want: W(pongOf(p125))},
		{id: "2.7", desc: "unsolicited pong without payload", send: S(f(pong(nil)))},
		{id: "2.8", desc: "unsolicited pong with payload", send: S(f(pong(hello)))},
		{id: "2.9", desc: "unsolicited pong then ping", send: S(f(pong([]byte("unsolicited"))), f(ping(hello))), want: W(pongOf(hello))},
		{id: "2.10", desc: "10 pings", send: S(rawFrames(tenPings...)), want: W(pongRun(tenPayloads...))},
		{id: "2.11", desc: "10 pings chopped in 1-byte writes", send: tenChopped, want: W(pongRun(tenPayloads...))},
		{id: "2.12", desc: "ping with invalid UTF-8 payload is answered verbatim", send: S(f(ping(badUTF8))), want: W(pongOf(badUTF8))},
		{id: "2.13", desc: "ping between two messages keeps order", send: S(f(txt("one")), f(ping(hello)), f(bin([]byte("two")))),
			want: W(echoText("one"), pongOf(hello), echoBin([]byte("two")))},
		{id: "2.14", desc: "ping with 126-byte payload after a message", send: S(f(txt("first")), f(ping(p126))), want: W(echoText("first")), close: codeProtocol},
		{id: "2.15", desc: "pong with 126-byte payload", send: S(f(pong(p126))), close: codeProtocol},
		{id: "2.16", desc: "ping with 64-bit length field claiming 1000 bytes", send: S(f(frame{fin: true, op: opPing, declared: 1000, hasDeclared: true})), close: codeProtocol},
		{id: "2.17", desc: "10 pings one at a time with pauses", send: spaced(tenPings, 20*ms), want: W(pongRun(tenPayloads...))},
	}
}

// spaced writes each frame in its own write, with a pause before each but
// the first.
func spaced(frs []frame, d time.Duration) []step {
	out := make([]step, len(frs))
	for i, fr := range frs {
		out[i] = f(fr)
		if i > 0 {
			out[i].pause = d
		}
	}
	return out
}

// ---- 3 Reserved bits ----

func reservedBitRows() []caseRow {
	hello := []byte("Hello, ginws!")
	withRsv := func(fr frame, rsv byte) frame { fr.rsv = rsv; return fr }
	rows := []caseRow{
		{id: "3.1", desc: "text with RSV=1", send: S(f(withRsv(txtB(hello), 1))), close: codeProtocol},
		{id: "3.2", desc: "text, text with RSV=2, ping", send: S(f(txtB(hello)), f(withRsv(txtB(hello), 2)), f(ping(hello))),
			want: W(echoTextB(hello)), close: codeProtocol},
		{id: "3.3", desc: "text, text with RSV=3, ping, frame by frame", send: S(f(txtB(hello)), after(50*ms, f(withRsv(txtB(hello), 3))), after(50*ms, f(ping(hello)))),
			want: W(echoTextB(hello)), close: codeProtocol},
		{id: "3.4", desc: "text, text with RSV=4, ping, chopped in 1-byte writes",
			send: S(chopped(txtB(hello), 1, 0), chopped(withRsv(txtB(hello), 4), 1, 0), chopped(ping(hello), 1, 0)),
			want: W(echoTextB(hello)), close: codeProtocol},
		{id: "3.5", desc: "binary with RSV=5", send: S(f(withRsv(bin(makeBinary(64)), 5))), close: codeProtocol},
		{id: "3.6", desc: "ping with RSV=6", send: S(f(withRsv(ping(hello), 6))), close: codeProtocol},
		{id: "3.7", desc: "close with RSV=7", send: S(f(withRsv(closeF(codeNormal, ""), 7))), close: codeProtocol},
	}
	// 3.8: every combination of reserved bits on every kind of frame.
	kinds := []struct {
		name  string
		steps func(rsv byte) []step
	}{
		{"text", func(r byte) []step { return S(f(withRsv(txtB(hello), r))) }},
		{"binary", func(r byte) []step { return S(f(withRsv(bin(hello), r))) }},
		{"ping", func(r byte) []step { return S(f(withRsv(ping(hello), r))) }},
		{"pong", func(r byte) []step { return S(f(withRsv(pong(hello), r))) }},
		{"close", func(r byte) []step { return S(f(withRsv(closeF(codeNormal, "bye"), r))) }},
		{"continuation", func(r byte) []step {
			return S(f(fragment(opText, hello, false)), f(withRsv(fragment(opCont, hello, true), r)))
		}},
	}
	n := 0
	for _, k := range kinds {
		for rsv := byte(1); rsv <= 7; rsv++ {
			n++
			rows = append(rows, caseRow{
				id: fmt.Sprintf("3.8.%d", n), desc: fmt.Sprintf("%s with RSV bits %03b", k.name, rsv),
				send: k.steps(rsv), close: codeProtocol,
			})
		}
	}
	return rows
}

// ---- 4 Opcodes ----

func opcodeRows() []caseRow {
	hello := []byte("Hello, ginws!")
	op := func(o byte, p []byte) frame { return frame{fin: true, op: o, payload: p} }
	var rows []caseRow
	for group, ops := range [][]byte{{3, 4, 5, 6, 7}, {0xB, 0xC, 0xD, 0xE, 0xF}} {
		sec := fmt.Sprintf("4.%d", group+1)
		kind := "non-control"
		if group == 1 {
			kind = "control"
		}
		rows = append(rows,
			caseRow{id: sec + ".1", desc: fmt.Sprintf("reserved %s opcode %d", kind, ops[0]),
				send: S(f(op(ops[0], nil))), close: codeProtocol},
			caseRow{id: sec + ".2", desc: fmt.Sprintf("reserved %s opcode %d with payload", kind, ops[1]),
				send: S(f(op(ops[1], hello))), close: codeProtocol},
			caseRow{id: sec + ".3", desc: fmt.Sprintf("text, reserved opcode %d, ping", ops[2]),
				send: S(f(txtB(hello)), f(op(ops[2], nil)), f(ping(hello))), want: W(echoTextB(hello)), close: codeProtocol},
			caseRow{id: sec + ".4", desc: fmt.Sprintf("text, reserved opcode %d with payload, ping", ops[3]),
				send: S(f(txtB(hello)), f(op(ops[3], hello)), f(ping(hello))), want: W(echoTextB(hello)), close: codeProtocol},
			caseRow{id: sec + ".5", desc: fmt.Sprintf("text, reserved opcode %d with payload, ping, chopped in 1-byte writes", ops[4]),
				send: S(chopped(txtB(hello), 1, 0), chopped(op(ops[4], hello), 1, 0), chopped(ping(hello), 1, 0)),
				want: W(echoTextB(hello)), close: codeProtocol},
		)
	}
	// 4.3: every reserved opcode, with and without a preceding message,
	// with and without FIN, and inside a fragmented message.
	n := 0
	for _, o := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		variants := []caseRow{
			{desc: fmt.Sprintf("opcode %#x alone", o), send: S(f(op(o, hello))), close: codeProtocol},
			{desc: fmt.Sprintf("opcode %#x without FIN", o), send: S(f(frame{op: o, payload: hello})), close: codeProtocol},
			{desc: fmt.Sprintf("binary then opcode %#x", o), send: S(f(bin(hello)), f(op(o, nil))), want: W(echoBin(hello)), close: codeProtocol},
			{desc: fmt.Sprintf("opcode %#x inside a fragmented text", o),
				send: S(f(fragment(opText, hello, false)), f(op(o, hello)), f(fragment(opCont, hello, true))), close: codeProtocol},
		}
		for _, v := range variants {
			n++
			v.id = fmt.Sprintf("4.3.%d", n)
			rows = append(rows, v)
		}
	}
	return rows
}

// ---- 5 Fragmentation ----

func fragmentationRows() []caseRow {
	f1, f2 := []byte("fragment1"), []byte("fragment2")
	both := []byte("fragment1fragment2")
	pp := []byte("ping payload")
	frag := func(op byte, p []byte, fin bool) frame { return fragment(op, p, fin) }
	rows := []caseRow{
		{id: "5.1", desc: "ping in 2 fragments", send: S(f(frag(opPing, f1, false)), f(frag(opCont, f2, true))), close: codeProtocol},
		{id: "5.2", desc: "pong in 2 fragments", send: S(f(frag(opPong, f1, false)), f(frag(opCont, f2, true))), close: codeProtocol},
		{id: "5.3", desc: "text in 2 fragments", send: S(f(frag(opText, f1, false)), f(frag(opCont, f2, true))), want: W(echoTextB(both))},
		{id: "5.4", desc: "text in 2 fragments frame by frame", send: S(f(frag(opText, f1, false)), after(100*ms, f(frag(opCont, f2, true)))), want: W(echoTextB(both))},
		{id: "5.5", desc: "text in 2 fragments chopped in 1-byte writes",
			send: S(chopped(frag(opText, f1, false), 1, ms), chopped(frag(opCont, f2, true), 1, ms)), want: W(echoTextB(both))},
		{id: "5.6", desc: "text in 2 fragments with ping between",
			send: S(f(frag(opText, f1, false)), f(ping(pp)), f(frag(opCont, f2, true))), want: W(pongOf(pp), echoTextB(both))},
		{id: "5.7", desc: "text in 2 fragments with ping between frame by frame",
			send: S(f(frag(opText, f1, false)), after(50*ms, f(ping(pp))), after(50*ms, f(frag(opCont, f2, true)))), want: W(pongOf(pp), echoTextB(both))},
		{id: "5.8", desc: "text in 2 fragments with ping between chopped in 1-byte writes",
			send: S(chopped(frag(opText, f1, false), 1, ms), chopped(ping(pp), 1, ms), chopped(frag(opCont, f2, true), 1, ms)),
			want: W(pongOf(pp), echoTextB(both))},
		{id: "5.9", desc: "continuation with FIN and no message then text",
			send: S(f(frag(opCont, f2, true)), f(txt("never echoed"))), close: codeProtocol},
		{id: "5.10", desc: "continuation with FIN and no message then text frame by frame",
			send: S(f(frag(opCont, f2, true)), after(50*ms, f(txt("never echoed")))), close: codeProtocol},
		{id: "5.11", desc: "continuation with FIN and no message then text chopped",
			send: S(chopped(frag(opCont, f2, true), 1, ms), chopped(txt("never echoed"), 1, ms)), close: codeProtocol},
		{id: "5.12", desc: "continuation without FIN and no message then text",
			send: S(f(frag(opCont, f2, false)), f(txt("never echoed"))), close: codeProtocol},
		{id: "5.13", desc: "continuation without FIN and no message then text frame by frame",
			send: S(f(frag(opCont, f2, false)), after(50*ms, f(txt("never echoed")))), close: codeProtocol},
		{id: "5.14", desc: "continuation without FIN and no message then text chopped",
			send: S(chopped(frag(opCont, f2, false), 1, ms), chopped(txt("never echoed"), 1, ms)), close: codeProtocol},
		{id: "5.15", desc: "complete fragmented text then a continuation pair",
			send: S(f(frag(opText, f1, false)), f(frag(opCont, f2, true)), f(frag(opCont, f1, false)), f(frag(opCont, f2, true))),
			want: W(echoTextB(both)), close: codeProtocol},
		{id: "5.16", desc: "continuation pair then text (no message open)",
			send: S(f(frag(opCont, f1, false)), f(frag(opCont, f2, true)), f(txt("never echoed"))), close: codeProtocol},
		{id: "5.17", desc: "two final continuations then text",
			send: S(f(frag(opCont, f1, true)), f(frag(opCont, f2, true)), f(txt("never echoed"))), close: codeProtocol},
		{id: "5.18", desc: "text without FIN then text with FIN",
			send: S(f(frag(opText, f1, false)), f(frag(opText, f2, true))), close: codeProtocol},
		{id: "5.19", desc: "text in 5 fragments with 2 pings between, paced",
			send: S(f(frag(opText, []byte("f1"), false)), after(100*ms, f(frag(opCont, []byte("f2"), false))),
				after(100*ms, f(ping([]byte("pong-1")))), after(100*ms, f(frag(opCont, []byte("f3"), false))),
				after(100*ms, f(frag(opCont, []byte("f4"), false))), after(100*ms, f(ping([]byte("pong-2")))),
				after(100*ms, f(frag(opCont, []byte("f5"), true)))),
			want: W(pongOf([]byte("pong-1")), pongOf([]byte("pong-2")), echoText("f1f2f3f4f5"))},
		{id: "5.20", desc: "text in 5 fragments with 2 pings between, chopped",
			send: S(chopped(frag(opText, []byte("f1"), false), 1, ms), chopped(frag(opCont, []byte("f2"), false), 1, ms),
				chopped(ping([]byte("pong-1")), 1, ms), chopped(frag(opCont, []byte("f3"), false), 1, ms),
				chopped(frag(opCont, []byte("f4"), false), 1, ms), chopped(ping([]byte("pong-2")), 1, ms),
				chopped(frag(opCont, []byte("f5"), true), 1, ms)),
			want: W(pongOf([]byte("pong-1")), pongOf([]byte("pong-2")), echoText("f1f2f3f4f5"))},
		// Beyond Autobahn.
		{id: "5.21", desc: "binary in 3 fragments",
			send: framesAsSteps(splitMessage(opBinary, makeBinary(300), 100, 200)), want: W(echoBin(makeBinary(300)))},
		{id: "5.22", desc: "binary without FIN then text",
			send: S(f(frag(opBinary, f1, false)), f(txt("x"))), close: codeProtocol},
		{id: "5.23", desc: "text without FIN then binary without FIN",
			send: S(f(frag(opText, f1, false)), f(frag(opBinary, f2, false))), close: codeProtocol},
		{id: "5.24", desc: "text in 100 fragments",
			send: S(rawFrames(fragmentsOf(opText, makeText(1000), 10)...)), want: W(echoTextB(makeText(1000)))},
		{id: "5.25", desc: "binary made of empty fragments",
			send: S(f(frag(opBinary, nil, false)), f(frag(opCont, nil, false)), f(frag(opCont, nil, true))), want: W(echoBin([]byte{}))},
		{id: "5.26", desc: "binary with empty first and last fragments",
			send: S(f(frag(opBinary, nil, false)), f(frag(opCont, f1, false)), f(frag(opCont, nil, true))), want: W(echoBin(f1))},
		{id: "5.27", desc: "unsolicited pong between fragments",
			send: S(f(frag(opText, f1, false)), f(pong(pp)), f(frag(opCont, f2, true))), want: W(echoTextB(both))},
		{id: "5.28", desc: "ping between every fragment of a 10-fragment binary",
			send: pingInterleaved(10), want: pingInterleavedWant(10)},
		{id: "5.29", desc: "close in 2 fragments",
			send: S(f(frag(opClose, closePayload(codeNormal, "")[:1], false)), f(frag(opCont, closePayload(codeNormal, "")[1:], true))), close: codeProtocol},
		{id: "5.30", desc: "ping without FIN inside a fragmented text",
			send: S(f(frag(opText, f1, false)), f(frag(opPing, pp, false)), f(frag(opCont, f2, true))), close: codeProtocol},
		{id: "5.31", desc: "two fragmented messages back to back",
			send: S(f(frag(opText, f1, false)), f(frag(opCont, f2, true)), f(frag(opBinary, f2, false)), f(frag(opCont, f1, true))),
			want: W(echoTextB(both), echoBin([]byte("fragment2fragment1")))},
		{id: "5.32", desc: "text fragment then continuation with text opcode and FIN",
			send: S(f(frag(opText, f1, false)), f(frag(opCont, f2, false)), f(frag(opText, f2, true))), close: codeProtocol},
	}
	return rows
}

func pingInterleaved(n int) []step {
	p := makeBinary(n * 7)
	var out []step
	for i, fr := range fragmentsOf(opBinary, p, 7) {
		out = append(out, f(fr))
		if i < n-1 {
			out = append(out, f(ping([]byte(fmt.Sprintf("ping %d", i)))))
		}
	}
	return out
}

func pingInterleavedWant(n int) []expect {
	var out []expect
	for i := 0; i < n-1; i++ {
		out = append(out, pongOf([]byte(fmt.Sprintf("ping %d", i))))
	}
	return append(out, echoBin(makeBinary(n*7)))
}

// ---- 7 Close handling ----

func closeRows() []caseRow {
	hello := []byte("Hello, ginws!")
	reason123 := bytes.Repeat([]byte("r"), 123)
	reason124 := bytes.Repeat([]byte("r"), 124)
	rows := []caseRow{
		{id: "7.1.1", desc: "text then close", send: S(f(txtB(hello)), f(closeF(codeNormal, ""))), want: W(echoTextB(hello)), close: codeNormal},
		{id: "7.1.2", desc: "close then close again", send: S(f(closeF(codeNormal, "")), f(closeF(codeNormal, ""))), close: codeNormal},
		{id: "7.1.3", desc: "close then ping is ignored", send: S(f(closeF(codeNormal, "")), f(ping(hello))), close: codeNormal},
		{id: "7.1.4", desc: "close then text is ignored", send: S(f(closeF(codeNormal, "")), f(txtB(hello))), close: codeNormal},
		{id: "7.1.5", desc: "close inside a fragmented text; the rest is ignored",
			send: S(f(fragment(opText, hello, false)), f(closeF(codeNormal, "")), f(fragment(opCont, hello, true))), close: codeNormal},
		{id: "7.1.6", desc: "256 KiB text, ping, close, then text",
			send: S(f(txtB(makeText(256<<10))), f(ping(hello)), f(closeF(codeNormal, "")), f(txt("after close"))),
			want: W(echoTextB(makeText(256<<10)), pongOf(hello)), close: codeNormal},
		{id: "7.1.7", desc: "close then data after a pause is ignored",
			send: S(f(closeF(codeNormal, "")), after(100*ms, f(txtB(hello)))), close: codeNormal},
		{id: "7.1.8", desc: "close then garbage bytes are ignored",
			send: S(f(closeF(codeNormal, "")), raw([]byte{0xff, 0xff, 0xff, 0xff})), close: codeNormal},
		{id: "7.3.1", desc: "close with empty payload", send: S(f(closeRaw(nil))), close: closeEmptyOr1000},
		{id: "7.3.2", desc: "close with 1-byte payload", send: S(f(closeRaw([]byte{0x03}))), close: codeProtocol},
		{id: "7.3.3", desc: "close 1000 without reason", send: S(f(closeF(codeNormal, ""))), close: codeNormal},
		{id: "7.3.4", desc: "close 1000 with reason", send: S(f(closeF(codeNormal, "Grüße, bye"))), close: codeNormal},
		{id: "7.3.5", desc: "close 1000 with 123-byte reason", send: S(f(closeF(codeNormal, string(reason123)))), close: codeNormal},
		{id: "7.3.6", desc: "close 1000 with 124-byte reason (126-byte payload)", send: S(f(closeF(codeNormal, string(reason124)))), close: codeProtocol},
		{id: "7.3.7", desc: "close with empty payload chopped in 1-byte writes", send: S(chopped(closeRaw(nil), 1, ms)), close: closeEmptyOr1000},
		{id: "7.3.8", desc: "close 1000 chopped in 1-byte writes", send: S(chopped(closeF(codeNormal, "bye"), 1, ms)), close: codeNormal},
		{id: "7.5.1", desc: "close reason with invalid UTF-8", send: S(f(closeRaw(append(closePayload(codeNormal, ""), 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80, 0x65, 0x64, 0x69, 0x74, 0x65, 0x64)))), close: codeInvalidData},
		{id: "7.5.2", desc: "close reason with a truncated sequence", send: S(f(closeRaw(append(closePayload(codeNormal, "bye"), 0xe2, 0x82)))), close: codeInvalidData},
		{id: "7.5.3", desc: "close reason with byte 0xff", send: S(f(closeRaw(append(closePayload(codeGoingAway, ""), 0xff)))), close: codeInvalidData},
		{id: "7.5.4", desc: "close reason with an overlong sequence", send: S(f(closeRaw(append(closePayload(codeNormal, ""), 0xc0, 0xaf)))), close: codeInvalidData},
	}
	valid := []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999}
	for i, code := range valid {
		rows = append(rows, caseRow{
			id: fmt.Sprintf("7.7.%d", i+1), desc: fmt.Sprintf("close code %d is echoed", code),
			send: S(f(closeF(code, ""))), close: code,
		})
	}
	for i, code := range valid {
		rows = append(rows, caseRow{
			id: fmt.Sprintf("7.8.%d", i+1), desc: fmt.Sprintf("close code %d with reason after a message", code),
			send: S(f(txt("last words")), f(closeF(code, "reason ✓"))), want: W(echoText("last words")), close: code,
		})
	}
	invalid := []int{0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}
	for i, code := range invalid {
		rows = append(rows, caseRow{
			id: fmt.Sprintf("7.9.%d", i+1), desc: fmt.Sprintf("close with invalid code %d", code),
			send: S(f(closeF(code, ""))), close: codeProtocol,
		})
	}
	return rows
}
