package frame

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refPrefixOK reports whether q can still be the beginning of valid UTF-8:
// every rune in it is valid, except perhaps an unfinished last one that
// some continuation bytes could complete. It leans on unicode/utf8 only.
func refPrefixOK(q []byte) bool {
	for len(q) > 0 {
		r, size := utf8.DecodeRune(q)
		if r == utf8.RuneError && size == 1 {
			// FullRune is false only for a valid but unfinished start.
			return !utf8.FullRune(q)
		}
		q = q[size:]
	}
	return true
}

// refFirstBad is the index of the first byte after which p can no longer
// be a prefix of valid UTF-8, or -1. Linear: at an invalid sequence, the
// bad byte is the first one past its longest unfinished valid start.
func refFirstBad(p []byte) int {
	for q := 0; q < len(p); {
		r, size := utf8.DecodeRune(p[q:])
		if r != utf8.RuneError || size != 1 {
			q += size
			continue
		}
		k := 0
		for k < len(p)-q && k < utf8.UTFMax && !utf8.FullRune(p[q:q+k+1]) {
			k++
		}
		if q+k == len(p) {
			return -1 // a valid start, cut by the end of p
		}
		return q + k
	}
	return -1
}

// refFirstBadSlow is refFirstBad by definition, for cross-checking.
func refFirstBadSlow(p []byte) int {
	for i := range p {
		if !refPrefixOK(p[:i+1]) {
			return i
		}
	}
	return -1
}

// feed writes the chunks into a fresh validator. It returns the index of
// the chunk whose Write failed (-1 if none) and whether the validator was
// Complete at the end.
func feed(chunks [][]byte) (failed int, complete bool) {
	var v UTF8
	for i, c := range chunks {
		if !v.Write(c) {
			return i, false
		}
	}
	return -1, v.Complete()
}

// checkUTF8 compares the validator with unicode/utf8 on p: whole, split at
// every single boundary, and byte by byte, where it must fail exactly at
// the first bad byte (fail fast) and never before. It reports at most one
// failure per input and avoids testify in the loop, as it runs for
// hundreds of thousands of inputs.
func checkUTF8(t *testing.T, p []byte) bool {
	t.Helper()
	want := utf8.Valid(p)
	bad := refFirstBad(p)
	if got := ValidUTF8(p); got != want {
		t.Errorf("ValidUTF8(%x) = %v, unicode/utf8 says %v", p, got, want)
		return false
	}

	// One Write of everything, then two Writes split at every boundary
	// (empty halves included).
	for i := -1; i <= len(p); i++ {
		chunks := [][]byte{p}
		if i >= 0 {
			chunks = [][]byte{p[:i], p[i:]}
		}
		failed, complete := feed(chunks)
		wantFail := -1
		if bad >= 0 {
			wantFail = 0
			if i >= 0 && bad >= i {
				wantFail = 1
			}
		}
		if failed != wantFail {
			t.Errorf("Write of %q: chunk %d failed, want %d (first bad byte %d)", chunks, failed, wantFail, bad)
			return false
		}
		if wantFail < 0 && complete != want {
			t.Errorf("Write of %q: Complete = %v, want %v", chunks, complete, want)
			return false
		}
	}

	// Byte by byte: the Write of the first bad byte fails, none before.
	var v UTF8
	for i := range p {
		ok := v.Write(p[i : i+1])
		if wantOK := bad < 0 || i < bad; ok != wantOK {
			t.Errorf("byte-wise %x: Write of byte %d = %v, first bad byte is %d", p, i, ok, bad)
			return false
		}
		if !ok {
			return true
		}
	}
	if v.Complete() != want {
		t.Errorf("byte-wise %x: Complete = %v, want %v", p, v.Complete(), want)
		return false
	}
	return true
}

func TestUTF8ExhaustiveOneAndTwoBytes(t *testing.T) {
	for a := range 256 {
		if !checkUTF8(t, []byte{byte(a)}) {
			return
		}
	}
	for a := range 256 {
		for b := range 256 {
			if !checkUTF8(t, []byte{byte(a), byte(b)}) {
				return
			}
		}
	}
}

// boundary bytes of the UTF-8 ranges (RFC 3629 section 4).
var utf8Edges = []byte{
	0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
	0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5,
	0xF7, 0xF8, 0xFF,
}

func TestUTF8EdgeBytesThreeAndFour(t *testing.T) {
	// Every lead byte followed by every combination of edge bytes.
	for a := range 256 {
		for _, b := range utf8Edges {
			for _, c := range utf8Edges {
				if !checkUTF8(t, []byte{byte(a), b, c}) {
					return
				}
			}
		}
	}
	// Four bytes behind the lead bytes whose second byte has a special
	// range, their neighbours, and the first invalid one.
	for _, a := range []byte{0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5} {
		for _, b := range utf8Edges {
			for _, c := range utf8Edges {
				for _, d := range utf8Edges {
					if !checkUTF8(t, []byte{byte(a), b, c, d}) {
						return
					}
				}
			}
		}
	}
}

func TestUTF8Cases(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool // valid and complete
		bad  int  // index of the first bad byte, -1 if none
	}{
		{"empty", "", true, -1},
		{"ascii", "Hello, world", true, -1},
		{"two-byte", "\xC2\x80\xDF\xBF", true, -1},
		{"three-byte", "\xE0\xA0\x80\xEF\xBF\xBF", true, -1},
		{"four-byte", "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF", true, -1},
		{"U+FFFD", "\xEF\xBF\xBD", true, -1},
		{"U+D7FF last before surrogates", "\xED\x9F\xBF", true, -1},
		{"U+E000 first after surrogates", "\xEE\x80\x80", true, -1},
		{"U+10FFFF max", "\xF4\x8F\xBF\xBF", true, -1},
		{"overlong NUL C0 80", "\xC0\x80", false, 0},
		{"overlong C1 BF", "\xC1\xBF", false, 0},
		{"overlong 3-byte E0 80 80", "\xE0\x80\x80", false, 1},
		{"overlong 3-byte E0 9F BF", "\xE0\x9F\xBF", false, 1},
		{"overlong 4-byte F0 80 80 80", "\xF0\x80\x80\x80", false, 1},
		{"overlong 4-byte F0 8F BF BF", "\xF0\x8F\xBF\xBF", false, 1},
		{"surrogate U+D800", "\xED\xA0\x80", false, 1},
		{"surrogate U+DBFF", "\xED\xAF\xBF", false, 1},
		{"surrogate U+DC00", "\xED\xB0\x80", false, 1},
		{"surrogate U+DFFF", "\xED\xBF\xBF", false, 1},
		{"surrogate pair CESU-8", "\xED\xA0\xBD\xED\xB8\x80", false, 1},
		{"U+110000", "\xF4\x90\x80\x80", false, 1},
		{"F5 lead", "\xF5\x80\x80\x80", false, 0},
		{"F8 five-byte lead", "\xF8\x88\x80\x80\x80", false, 0},
		{"FE", "\xFE", false, 0},
		{"FF", "\xFF", false, 0},
		{"lone continuation", "\x80", false, 0},
		{"continuation after ascii", "abc\xBF", false, 3},
		{"extra continuation", "\xC3\xA9\xA9", false, 2},
		{"truncated 2-byte", "\xC3", false, -1},
		{"truncated 3-byte", "\xE2\x82", false, -1},
		{"truncated 4-byte", "\xF0\x9F\x98", false, -1},
		{"truncated then ascii", "\xE2\x82A", false, 2},
		{"ascii run then bad", "0123456789abcdef\xC0", false, 16},
		{"bad inside ascii run", "01234567\x80abcdef", false, 8},
		{"valid after 8-byte runs", "01234567012345670123456\xE2\x82\xAC", true, -1},
		{"Autobahn 6.3.1", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", false, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := []byte(tc.in)
			assert.Equal(t, tc.ok, ValidUTF8(p))
			assert.Equal(t, tc.ok, utf8.Valid(p), "the table disagrees with unicode/utf8")
			assert.Equal(t, tc.bad, refFirstBad(p), "the table disagrees with the reference")
			checkUTF8(t, p)
		})
	}
}

func TestUTF8EveryCodePoint(t *testing.T) {
	// All scalar values in one buffer, then cut into random chunks.
	var all []byte
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		all = utf8.AppendRune(all, r)
	}
	require.True(t, ValidUTF8(all))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2 {
		var v UTF8
		rest := all
		for len(rest) > 0 {
			n := min(len(rest), 1+rng.IntN(4096))
			if !v.Write(rest[:n]) {
				t.Fatalf("chunk %x rejected", rest[:n])
			}
			rest = rest[n:]
		}
		require.True(t, v.Complete())
	}

	// Every surrogate, encoded the way utf8.AppendRune refuses to.
	for r := 0xD800; r <= 0xDFFF; r++ {
		p := []byte{0xE0 | byte(r>>12), 0x80 | byte(r>>6)&0x3F, 0x80 | byte(r)&0x3F}
		var v UTF8
		if ValidUTF8(p) || !v.Write(p[:1]) || v.Write(p[1:2]) {
			t.Fatalf("surrogate U+%04X (%x) must fail at its second byte", r, p)
		}
	}

	// Every value past U+10FFFF that the 4-byte form can carry.
	for r := 0x110000; r <= 0x1FFFFF; r += 0x3F {
		p := []byte{0xF0 | byte(r>>18), 0x80 | byte(r>>12)&0x3F, 0x80 | byte(r>>6)&0x3F, 0x80 | byte(r)&0x3F}
		if ValidUTF8(p) || utf8.Valid(p) {
			t.Fatalf("U+%X (%x) accepted", r, p)
		}
	}

	// Overlong forms of every code point that has a shorter encoding.
	for r := 0; r < 0x10000; r += 7 {
		var p []byte
		if r < 0x800 {
			p = []byte{0xE0, 0x80 | byte(r>>6)&0x3F, 0x80 | byte(r)&0x3F}
			if ValidUTF8(p) {
				t.Fatalf("3-byte overlong U+%04X (%x) accepted", r, p)
			}
		}
		p = []byte{0xF0, 0x80 | byte(r>>12)&0x3F, 0x80 | byte(r>>6)&0x3F, 0x80 | byte(r)&0x3F}
		if ValidUTF8(p) {
			t.Fatalf("4-byte overlong U+%04X (%x) accepted", r, p)
		}
		if r < 0x80 {
			p = []byte{0xC0 | byte(r>>6), 0x80 | byte(r)&0x3F}
			if ValidUTF8(p) {
				t.Fatalf("2-byte overlong U+%04X (%x) accepted", r, p)
			}
		}
	}
}

// randomUTF8ish builds byte strings that are mostly valid UTF-8 with some
// damage: lead and continuation bytes from the edges, cut runes, swapped
// bytes, long ASCII runs that take the 8-byte fast path.
func randomUTF8ish(rng *rand.Rand) []byte {
	var p []byte
	for range rng.IntN(12) {
		switch rng.IntN(8) {
		case 0:
			p = append(p, bytes.Repeat([]byte{'a' + byte(rng.IntN(26))}, rng.IntN(20))...)
		case 1:
			p = append(p, utf8Edges[rng.IntN(len(utf8Edges))])
		case 2:
			p = append(p, byte(rng.IntN(256)))
		default:
			r := rune(rng.IntN(utf8.MaxRune + 1))
			if rng.IntN(3) == 0 {
				r = rune(rng.IntN(0x800))
			}
			enc := utf8.AppendRune(nil, r)
			if rng.IntN(6) == 0 {
				enc = enc[:rng.IntN(len(enc))]
			}
			p = append(p, enc...)
		}
	}
	if len(p) > 1 && rng.IntN(5) == 0 {
		i, j := rng.IntN(len(p)), rng.IntN(len(p))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

func TestUTF8RandomAgainstStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	valid, invalid := 0, 0
	for range 5000 {
		p := randomUTF8ish(rng)
		if utf8.Valid(p) {
			valid++
		} else {
			invalid++
		}
		if !checkUTF8(t, p) {
			return
		}
	}
	// The generator must exercise both verdicts.
	assert.Greater(t, valid, 500)
	assert.Greater(t, invalid, 500)
}

func TestRefFirstBadAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for range 5000 {
		p := randomUTF8ish(rng)
		if a, b := refFirstBad(p), refFirstBadSlow(p); a != b {
			t.Fatalf("refFirstBad(%x) = %d, by definition %d", p, a, b)
		}
	}
	for a := range 256 {
		for _, b := range utf8Edges {
			for _, c := range utf8Edges {
				p := []byte{byte(a), b, c}
				if x, y := refFirstBad(p), refFirstBadSlow(p); x != y {
					t.Fatalf("refFirstBad(%x) = %d, by definition %d", p, x, y)
				}
			}
		}
	}
}

func TestUTF8RandomMultiSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		p := randomUTF8ish(rng)
		bad := refFirstBad(p)
		// Cut into random chunks, some of them empty.
		var chunks [][]byte
		var ends []int
		for i := 0; i < len(p); {
			n := min(len(p)-i, rng.IntN(5))
			chunks = append(chunks, p[i:i+n])
			i += n
			ends = append(ends, i)
		}
		failed, complete := feed(chunks)
		if bad < 0 {
			require.Equalf(t, -1, failed, "%x in %q", p, chunks)
			require.Equalf(t, utf8.Valid(p), complete, "%x in %q", p, chunks)
			continue
		}
		// The chunk that fails is the one holding the first bad byte.
		want := 0
		for want < len(ends) && ends[want] <= bad {
			want++
		}
		require.Equalf(t, want, failed, "%x in %q, first bad byte %d", p, chunks, bad)
	}
}

func TestUTF8Reset(t *testing.T) {
	var v UTF8
	require.True(t, v.Write([]byte("\xE2\x82")))
	require.False(t, v.Complete())
	v.Reset()
	require.True(t, v.Complete())
	// A fresh start: a continuation byte is no longer expected.
	require.False(t, v.Write([]byte{0xAC}))
	v.Reset()
	require.True(t, v.Write([]byte("ok")))
	require.True(t, v.Complete())

	var zero UTF8
	require.True(t, zero.Complete(), "the zero value is ready and complete")
	require.True(t, zero.Write(nil))
}

func TestIncompleteTail(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"a", 0},
		{"abc", 0},
		{"\xC3", 1},
		{"a\xC3", 1},
		{"\xC3\xA9", 0},
		{"\xE2", 1},
		{"\xE2\x82", 2},
		{"\xE2\x82\xAC", 0},
		{"x\xE2\x82", 2},
		{"\xF0", 1},
		{"\xF0\x9F", 2},
		{"\xF0\x9F\x98", 3},
		{"\xF0\x9F\x98\x80", 0},
		{"ab\xF0\x9F\x98", 3},
		{"\x80", 0},         // lone continuation: nothing to hold back
		{"\x80\x80\x80", 0}, // no lead byte within reach
		{"\xC3\xA9\x80", 0}, // a finished 2-byte rune plus junk
		{"\xE2\x82\xAC\xC3", 1},
	}
	for _, tc := range tests {
		assert.Equalf(t, tc.want, IncompleteTail([]byte(tc.in)), "IncompleteTail(%x)", tc.in)
	}
}

func TestIncompleteTailEveryCut(t *testing.T) {
	// For valid text cut anywhere, the tail is exactly the bytes of the
	// rune the cut goes through.
	text := []byte("a\u00e9\u20ac\U0001F600z\u0800\U00010000\U0010FFFF\u07ff!")
	starts := map[int]bool{}
	for i := range string(text) {
		starts[i] = true
	}
	starts[len(text)] = true
	for cut := 0; cut <= len(text); cut++ {
		start := cut
		for !starts[start] {
			start--
		}
		want := cut - start
		got := IncompleteTail(text[:cut])
		require.Equalf(t, want, got, "cut at %d of %x", cut, text)
		// Dropping the tail always leaves valid UTF-8.
		require.True(t, utf8.Valid(text[:cut-got]))
	}
}
