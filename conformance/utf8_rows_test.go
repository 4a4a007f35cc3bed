package conformance

// Section 6: UTF-8 handling. Text messages must be valid UTF-8 (RFC 6455
// 5.6, 8.1; RFC 3629): overlong forms, surrogates (U+D800-U+DFFF), code
// points above U+10FFFF, the bytes C0, C1, F5-FF, stray continuation bytes
// and sequences cut short by the end of the message are invalid, and the
// server must fail the connection with 1007. Noncharacters such as U+FFFE
// are valid.

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// u8 is one byte sequence of the UTF-8 table.
type u8 struct {
	name  string
	b     []byte
	valid bool
}

type u8group struct {
	sub  string // section number, e.g. "6.7"
	name string
	seqs []u8
}

func hexs(s string) []byte {
	var out []byte
	for _, f := range strings.Fields(s) {
		var v byte
		if _, err := fmt.Sscanf(f, "%x", &v); err != nil {
			panic("bad hex " + f)
		}
		out = append(out, v)
	}
	return out
}

func ok(name string, b []byte) u8  { return u8{name, b, true} }
func bad(name string, b []byte) u8 { return u8{name, b, false} }
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func utf8Groups() []u8group {
	allCont := make([]byte, 0, 64)
	for b := 0x80; b <= 0xBF; b++ {
		allCont = append(allCont, byte(b))
	}
	var lonely2 []byte
	for b := 0xC0; b <= 0xDF; b++ {
		lonely2 = append(lonely2, byte(b), ' ')
	}
	return []u8group{
		{"6.5", "valid text samples", []u8{
			ok("ASCII", []byte("Hello, ginws")),
			ok("Latin-1 supplement", []byte("Grüße, Jürgen")),
			ok("Greek", []byte("Ελληνικά")),
			ok("CJK", []byte("日本語の文")),
			ok("astral symbols", []byte("𝄞🎉")),
			ok("mixed widths", []byte("a€𝄞ßz")),
		}},
		{"6.7", "first sequence of each length", []u8{
			ok("U+0000", hexs("00")),
			ok("U+0080", hexs("c2 80")),
			ok("U+0800", hexs("e0 a0 80")),
			ok("U+10000", hexs("f0 90 80 80")),
			bad("5-byte form F8 88 80 80 80", hexs("f8 88 80 80 80")),
			bad("6-byte form FC 84 80 80 80 80", hexs("fc 84 80 80 80 80")),
		}},
		{"6.8", "last sequence of each length", []u8{
			ok("U+007F", hexs("7f")),
			ok("U+07FF", hexs("df bf")),
			ok("U+FFFF", hexs("ef bf bf")),
			bad("4-byte form of 1FFFFF", hexs("f7 bf bf bf")),
			bad("5-byte form FB BF BF BF BF", hexs("fb bf bf bf bf")),
			bad("6-byte form FD BF BF BF BF BF", hexs("fd bf bf bf bf bf")),
		}},
		{"6.9", "other boundary conditions", []u8{
			ok("U+D7FF", hexs("ed 9f bf")),
			ok("U+E000", hexs("ee 80 80")),
			ok("U+FFFD", hexs("ef bf bd")),
			ok("U+10FFFF", hexs("f4 8f bf bf")),
			bad("U+110000", hexs("f4 90 80 80")),
		}},
		{"6.10", "unexpected continuation bytes", []u8{
			bad("80", hexs("80")),
			bad("BF", hexs("bf")),
			bad("80 BF", hexs("80 bf")),
			bad("80 BF 80", hexs("80 bf 80")),
			bad("80 BF 80 BF", hexs("80 bf 80 bf")),
			bad("ASCII 80 ASCII", cat([]byte("a"), hexs("80"), []byte("b"))),
			bad("U+00E9 then extra continuation", hexs("c3 a9 a9")),
			bad("all 64 continuation bytes", allCont),
		}},
		{"6.11", "lonely start bytes", []u8{
			bad("C0 space", hexs("c0 20")),
			bad("C2 space", hexs("c2 20")),
			bad("DF space", hexs("df 20")),
			bad("E0 space", hexs("e0 20")),
			bad("EF space", hexs("ef 20")),
			bad("F0 space", hexs("f0 20")),
			bad("F4 space", hexs("f4 20")),
			bad("F7 space", hexs("f7 20")),
			bad("F8 space", hexs("f8 20")),
			bad("FC space", hexs("fc 20")),
			bad("all 2-byte starters each followed by space", lonely2),
		}},
		{"6.12", "sequences with the last byte missing", []u8{
			bad("C2", hexs("c2")),
			bad("DF", hexs("df")),
			bad("E0 A0", hexs("e0 a0")),
			bad("E1 80", hexs("e1 80")),
			bad("EF BF", hexs("ef bf")),
			bad("F0 90 80", hexs("f0 90 80")),
			bad("F1 80 80", hexs("f1 80 80")),
			bad("F4 8F BF", hexs("f4 8f bf")),
			bad("C2 then ASCII", hexs("c2 41")),
			bad("E1 80 then ASCII", hexs("e1 80 41")),
			bad("F0 90 80 then ASCII", hexs("f0 90 80 41")),
			bad("ASCII then E2 82", cat([]byte("price: "), hexs("e2 82"))),
		}},
		{"6.13", "concatenated incomplete sequences", []u8{
			bad("C2 E0 A0 F0 90 80", hexs("c2 e0 a0 f0 90 80")),
			bad("DF EF BF F4 8F BF", hexs("df ef bf f4 8f bf")),
		}},
		{"6.14", "impossible bytes", []u8{
			bad("FE", hexs("fe")),
			bad("FF", hexs("ff")),
			bad("FE FE FF FF", hexs("fe fe ff ff")),
			bad("C1 in ASCII", cat([]byte("ab"), hexs("c1"), []byte("cd"))),
			bad("F5 80 80 80", hexs("f5 80 80 80")),
		}},
		{"6.15", "overlong forms of '/'", []u8{
			bad("C0 AF", hexs("c0 af")),
			bad("E0 80 AF", hexs("e0 80 af")),
			bad("F0 80 80 AF", hexs("f0 80 80 af")),
			bad("F8 80 80 80 AF", hexs("f8 80 80 80 af")),
			bad("FC 80 80 80 80 AF", hexs("fc 80 80 80 80 af")),
		}},
		{"6.16", "maximum overlong forms", []u8{
			bad("C1 BF", hexs("c1 bf")),
			bad("E0 9F BF", hexs("e0 9f bf")),
			bad("F0 8F BF BF", hexs("f0 8f bf bf")),
			bad("F8 87 BF BF BF", hexs("f8 87 bf bf bf")),
			bad("FC 83 BF BF BF BF", hexs("fc 83 bf bf bf bf")),
		}},
		{"6.17", "overlong forms of NUL", []u8{
			bad("C0 80", hexs("c0 80")),
			bad("E0 80 80", hexs("e0 80 80")),
			bad("F0 80 80 80", hexs("f0 80 80 80")),
			bad("F8 80 80 80 80", hexs("f8 80 80 80 80")),
			bad("FC 80 80 80 80 80", hexs("fc 80 80 80 80 80")),
		}},
		{"6.18", "single UTF-16 surrogates", []u8{
			bad("U+D800", hexs("ed a0 80")),
			bad("U+DB7F", hexs("ed ad bf")),
			bad("U+DB80", hexs("ed ae 80")),
			bad("U+DBFF", hexs("ed af bf")),
			bad("U+DC00", hexs("ed b0 80")),
			bad("U+DF80", hexs("ed be 80")),
			bad("U+DFFF", hexs("ed bf bf")),
		}},
		{"6.19", "paired UTF-16 surrogates", []u8{
			bad("U+D800 U+DC00", hexs("ed a0 80 ed b0 80")),
			bad("U+D800 U+DFFF", hexs("ed a0 80 ed bf bf")),
			bad("U+DBFF U+DC00", hexs("ed af bf ed b0 80")),
			bad("U+DBFF U+DFFF", hexs("ed af bf ed bf bf")),
		}},
		{"6.20", "code points above U+10FFFF", []u8{
			bad("U+110000", hexs("f4 90 80 80")),
			bad("U+13FFFF", hexs("f4 bf bf bf")),
			bad("U+140000", hexs("f5 80 80 80")),
			bad("U+1FFFFF", hexs("f7 bf bf bf")),
			bad("U+200000 in 5 bytes", hexs("f8 88 80 80 80")),
			bad("U+4000000 in 6 bytes", hexs("fc 84 80 80 80 80")),
		}},
		{"6.21", "noncharacters (valid)", []u8{
			ok("U+FFFE", hexs("ef bf be")),
			ok("U+FFFF", hexs("ef bf bf")),
			ok("U+FDD0", hexs("ef b7 90")),
			ok("U+FDEF", hexs("ef b7 af")),
			ok("U+1FFFE", hexs("f0 9f bf be")),
			ok("U+FFFFF", hexs("f3 bf bf bf")),
			ok("U+10FFFE", hexs("f4 8f bf be")),
		}},
		{"6.22", "invalid sequences inside valid text", []u8{
			bad("ASCII, U+110000, ASCII", cat([]byte("ab"), hexs("f4 90 80 80"), []byte("cd"))),
			bad("Greek, surrogate, Greek", cat([]byte("Ελ"), hexs("ed a0 80"), []byte("λά"))),
			bad("ASCII, overlong NUL, ASCII", cat([]byte("ok"), hexs("c0 80"), []byte("ok"))),
			bad("valid text then FF", cat([]byte("Grüße"), hexs("ff"))),
			bad("valid 4-byte then stray continuation", cat([]byte("𝄞"), hexs("9e"))),
		}},
	}
}

// maxSplitLen bounds the message length for which every split point gets
// its own row.
const maxSplitLen = 12

// rejectAt returns the index of the first byte at which b stops being a
// prefix of some valid UTF-8 text, or -1 if every prefix of b can still be
// completed (b is valid, or invalid only because it ends early).
func rejectAt(b []byte) int {
	i := 0
	for i < len(b) {
		c := b[i]
		var n int
		lo, hi := byte(0x80), byte(0xBF) // range of the second byte
		switch {
		case c < 0x80:
			i++
			continue
		case c >= 0xC2 && c <= 0xDF:
			n = 2
		case c == 0xE0:
			n, lo = 3, 0xA0
		case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
			n = 3
		case c == 0xED:
			n, hi = 3, 0x9F
		case c == 0xF0:
			n, lo = 4, 0x90
		case c >= 0xF1 && c <= 0xF3:
			n = 4
		case c == 0xF4:
			n, hi = 4, 0x8F
		default:
			return i
		}
		for k := 1; k < n; k++ {
			if i+k >= len(b) {
				return -1
			}
			x := b[i+k]
			if k == 1 {
				if x < lo || x > hi {
					return i + k
				}
			} else if x < 0x80 || x > 0xBF {
				return i + k
			}
		}
		i += n
	}
	return -1
}

func utf8Rows() []caseRow {
	var rows []caseRow
	add := func(r caseRow) { rows = append(rows, r) }
	// expect gives the expected outcome for a text message with content b.
	outcome := func(r caseRow, b []byte) caseRow {
		if utf8.Valid(b) {
			r.want = W(echoTextB(b))
		} else {
			r.close = codeInvalidData
		}
		return r
	}

	// 6.1: empty text and empty fragments.
	add(caseRow{id: "6.1.1", desc: "empty text", send: S(f(txt(""))), want: W(echoText(""))})
	add(caseRow{id: "6.1.2", desc: "text of 3 empty fragments",
		send: S(f(fragment(opText, nil, false)), f(fragment(opCont, nil, false)), f(fragment(opCont, nil, true))), want: W(echoText(""))})
	add(caseRow{id: "6.1.3", desc: "text of empty, non-empty, empty fragments",
		send: S(f(fragment(opText, nil, false)), f(fragment(opCont, []byte("middle"), false)), f(fragment(opCont, nil, true))), want: W(echoText("middle"))})

	// 6.2: valid text cut at every byte boundary, and byte by byte.
	sample := []byte("Grüße ★ 𝄞!")
	for i := 1; i < len(sample); i++ {
		add(caseRow{id: fmt.Sprintf("6.2.%d", i), desc: fmt.Sprintf("valid text cut at byte %d", i),
			send: framesAsSteps(splitMessage(opText, sample, i)), want: W(echoTextB(sample))})
	}
	add(caseRow{id: fmt.Sprintf("6.2.%d", len(sample)), desc: "valid text in 1-byte fragments",
		send: framesAsSteps(fragmentsOf(opText, sample, 1)), want: W(echoTextB(sample))})
	add(caseRow{id: fmt.Sprintf("6.2.%d", len(sample)+1), desc: "valid text in 1-byte fragments chopped",
		send: choppedAll(fragmentsOf(opText, sample, 1), 1, 0), want: W(echoTextB(sample))})

	// 6.3: invalid text whole, in 1-byte fragments, and chopped.
	badSample := cat([]byte("Grüße "), hexs("ed a0 80"), []byte(" ok"))
	add(caseRow{id: "6.3.1", desc: "invalid text in one frame", send: S(f(txtB(badSample))), close: codeInvalidData})
	add(caseRow{id: "6.3.2", desc: "invalid text in 1-byte fragments", send: framesAsSteps(fragmentsOf(opText, badSample, 1)), close: codeInvalidData})
	add(caseRow{id: "6.3.3", desc: "invalid text in one frame chopped in 1-byte writes", send: S(chopped(txtB(badSample), 1, 0)), close: codeInvalidData})

	// 6.6: every prefix of a text mixing 2-, 3- and 4-byte characters, as
	// a whole message: valid only where the cut falls between characters.
	mixed := []byte("κό€𝄞")
	for k := 1; k <= len(mixed); k++ {
		add(outcome(caseRow{id: fmt.Sprintf("6.6.%d", k), desc: fmt.Sprintf("first %d bytes of a mixed text", k),
			send: S(f(txtB(mixed[:k])))}, mixed[:k]))
	}

	// 6.4: fail fast. An invalid sequence must be rejected as soon as the
	// bytes that make it invalid have arrived, even if the message (or the
	// frame) is never finished. The client never sends the rest, so a
	// server that validates only complete messages times out here.
	var failFast []u8
	for _, g := range utf8Groups() {
		for _, s := range g.seqs {
			if !s.valid && rejectAt(s.b) >= 0 {
				failFast = append(failFast, s)
			}
		}
	}
	n := 0
	for _, s := range failFast {
		k := rejectAt(s.b)
		upTo := s.b[:k+1]
		n++
		add(caseRow{id: fmt.Sprintf("6.4.%d", n), desc: fmt.Sprintf("%s: unfinished message, invalid first fragment", s.name),
			send: S(f(fragment(opText, upTo, false))), close: codeInvalidData, timeout: 4 * time.Second})
		n++
		add(caseRow{id: fmt.Sprintf("6.4.%d", n), desc: fmt.Sprintf("%s: unfinished message, valid fragment then invalid one", s.name),
			send: S(f(fragment(opText, []byte("Ελλάδα ok "), false)), f(fragment(opCont, upTo, false))), close: codeInvalidData, timeout: 4 * time.Second})
		if k > 0 {
			n++
			add(caseRow{id: fmt.Sprintf("6.4.%d", n), desc: fmt.Sprintf("%s: unfinished message, rejecting byte alone in its fragment", s.name),
				send: S(f(fragment(opText, s.b[:k], false)), f(fragment(opCont, s.b[k:k+1], false))), close: codeInvalidData, timeout: 4 * time.Second})
		}
		n++
		rest := cat(s.b[k+1:], []byte(" rest"))
		add(caseRow{id: fmt.Sprintf("6.4.%d", n), desc: fmt.Sprintf("%s: invalid fragment, pause, final fragment", s.name),
			send:  S(f(fragment(opText, cat([]byte("ok "), upTo), false)), after(300*time.Millisecond, f(fragment(opCont, rest, true)))),
			close: codeInvalidData})
	}
	// Within a single frame the payload arrives in pieces; a server may fail
	// as soon as the invalid bytes are in, or once the frame is complete.
	// Both pass here (the frame is completed after a pause).
	for i, s := range []u8{failFast[0], bad("surrogate", hexs("ed a0 80")), bad("overlong", hexs("c0 af"))} {
		payload := cat([]byte("Ελλάδα "), s.b, []byte(" tail"))
		fr := txtB(payload)
		hdr := len(fr.encode()) - len(payload)
		cut1 := hdr + len("Ελλάδα ")
		cut2 := cut1 + len(s.b)
		add(caseRow{id: fmt.Sprintf("6.4.%d", n+i+1), desc: fmt.Sprintf("%s inside one frame sent in 3 paced writes", s.name),
			send: S(splitAt(fr, 300*time.Millisecond, cut1, cut2)), close: codeInvalidData})
	}

	// 6.5, 6.7-6.22: each sequence whole, cut at every byte boundary into
	// two fragments, and in 1-byte fragments.
	for _, g := range utf8Groups() {
		for i, s := range g.seqs {
			id := fmt.Sprintf("%s.%d", g.sub, i+1)
			add(outcome(caseRow{id: id, desc: s.name, send: S(f(txtB(s.b)))}, s.b))
			if len(s.b) < 2 {
				continue
			}
			if len(s.b) <= maxSplitLen {
				for cut := 1; cut < len(s.b); cut++ {
					add(outcome(caseRow{id: fmt.Sprintf("%s.c%d", id, cut), desc: fmt.Sprintf("%s cut at byte %d", s.name, cut),
						send: framesAsSteps(splitMessage(opText, s.b, cut))}, s.b))
				}
			}
			add(outcome(caseRow{id: id + ".b", desc: s.name + " in 1-byte fragments",
				send: S(rawFrames(fragmentsOf(opText, s.b, 1)...))}, s.b))
		}
	}
	return rows
}

// choppedAll writes each frame in chunks of n bytes.
func choppedAll(frs []frame, n int, gap time.Duration) []step {
	out := make([]step, len(frs))
	for i, fr := range frs {
		out[i] = chopped(fr, n, gap)
	}
	return out
}
