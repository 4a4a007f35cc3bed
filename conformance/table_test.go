package conformance

// Checks of the harness itself: the table is well-formed, the UTF-8 table
// agrees with an independent decoder, and frames are encoded byte-exactly.

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unicode/utf8"
)

func TestTableWellFormed(t *testing.T) {
	ids := map[string]bool{}
	names := map[string]bool{}
	total := 0
	for _, sec := range allSections() {
		for _, r := range sec.rows {
			if r.id == "" || r.desc == "" {
				t.Errorf("row without id or description: %+v", r)
			}
			if ids[r.id] {
				t.Errorf("duplicate id %s", r.id)
			}
			ids[r.id] = true
			if names[r.name()] {
				t.Errorf("duplicate name %s", r.name())
			}
			names[r.name()] = true
			if r.build == nil && len(r.send) == 0 {
				t.Errorf("%s: sends nothing", r.id)
			}
			if r.orFail != 0 && len(r.want) == 0 {
				t.Errorf("%s: orFail without an expected echo", r.id)
			}
		}
		t.Logf("%-22s %4d rows", sec.name, len(sec.rows))
		total += len(sec.rows)
	}
	t.Logf("%-22s %4d rows", "total", total)
}

func TestUTF8TableAgreesWithDecoder(t *testing.T) {
	for _, g := range utf8Groups() {
		for _, s := range g.seqs {
			if got := utf8.Valid(s.b); got != s.valid {
				t.Errorf("%s %s (% x): table says valid=%v, decoder says %v", g.sub, s.name, s.b, s.valid, got)
			}
			k := rejectAt(s.b)
			if s.valid && k != -1 {
				t.Errorf("%s %s: valid but rejectAt=%d", g.sub, s.name, k)
			}
			// Every prefix before the reject point must still be completable,
			// which the decoder confirms on the prefix's complete runes.
			if k >= 0 && utf8.Valid(s.b[:k+1]) {
				t.Errorf("%s %s: rejectAt=%d but % x is valid", g.sub, s.name, k, s.b[:k+1])
			}
		}
	}
	// rejectAt against the decoder on all 1-, 2- and 3-byte strings: if a
	// string is valid, nothing is rejected; if rejectAt says -1 on an
	// invalid one, the string must be a truncated valid sequence (so
	// appending continuation bytes can fix it).
	for a := 0; a < 256; a++ {
		for b := 0; b < 256; b++ {
			for _, s := range [][]byte{{byte(a)}, {byte(a), byte(b)}, {byte(a), byte(b), 0x80}, {byte(a), byte(b), 0xBF}} {
				k := rejectAt(s)
				if utf8.Valid(s) && k != -1 {
					t.Fatalf("% x: valid, but rejectAt=%d", s, k)
				}
				if k == -1 && !utf8.Valid(s) && !completable(s) {
					t.Fatalf("% x: rejectAt=-1 but not completable", s)
				}
				if k >= 0 && completable(s[:k+1]) {
					t.Fatalf("% x: rejectAt=%d but the prefix is completable", s, k)
				}
			}
		}
	}
}

// completable reports whether some suffix of up to 3 bytes makes s valid.
func completable(s []byte) bool {
	if utf8.Valid(s) {
		return true
	}
	for _, tail := range [][]byte{{0x80}, {0x90}, {0xA0}, {0x80, 0x80}, {0x90, 0x80}, {0xA0, 0x80}, {0x80, 0x80, 0x80}, {0x90, 0x80, 0x80}} {
		if utf8.Valid(append(append([]byte{}, s...), tail...)) {
			return true
		}
	}
	return false
}

func TestFrameEncoding(t *testing.T) {
	unmask := func(b []byte, keyAt int) []byte {
		key := b[keyAt : keyAt+4]
		p := append([]byte{}, b[keyAt+4:]...)
		for i := range p {
			p[i] ^= key[i%4]
		}
		return p
	}
	p := makeBinary(70000)
	for _, tc := range []struct {
		fr      frame
		header  []byte // without the key
		payload []byte
	}{
		{txt("abc"), []byte{0x81, 0x83}, []byte("abc")},
		{bin(p[:125]), []byte{0x82, 0xFD}, p[:125]},
		{bin(p[:126]), []byte{0x82, 0xFE, 0x00, 0x7E}, p[:126]},
		{bin(p[:65535]), []byte{0x82, 0xFE, 0xFF, 0xFF}, p[:65535]},
		{bin(p[:65536]), []byte{0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0}, p[:65536]},
		{frame{op: opCont, rsv: 5, payload: p[:3], lenBits: 16}, []byte{0x50, 0xFE, 0, 3}, p[:3]},
		{frame{fin: true, op: opPing, payload: p[:5], lenBits: 64}, []byte{0x89, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5}, p[:5]},
		{frame{fin: true, op: opBinary, declared: 1 << 63, hasDeclared: true}, []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, nil},
		{frame{fin: true, op: 0xF, payload: p[:7], unmasked: true}, []byte{0x8F, 0x07}, p[:7]},
	} {
		enc := tc.fr.encode()
		if !bytes.HasPrefix(enc, tc.header) {
			t.Errorf("%s: header % x, want % x", tc.fr, enc[:len(tc.header)], tc.header)
			continue
		}
		var got []byte
		if tc.fr.unmasked {
			got = enc[len(tc.header):]
		} else {
			got = unmask(enc, len(tc.header))
		}
		if !bytes.Equal(got, tc.payload) && !(len(got) == 0 && len(tc.payload) == 0) {
			t.Errorf("%s: payload differs after unmasking", tc.fr)
		}
	}
	// maskBytes against the byte-wise definition, at every length mod 8.
	key := [4]byte{1, 2, 3, 0xF0}
	for n := 0; n < 40; n++ {
		a := makeBinary(n)
		b := append([]byte{}, a...)
		maskBytes(key, a)
		for i := range b {
			b[i] ^= key[i%4]
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("maskBytes wrong at length %d", n)
		}
	}
	if got := binary.BigEndian.Uint16(closePayload(1002, "x")); got != 1002 {
		t.Fatalf("closePayload code %d", got)
	}
	// makeText gives exactly n bytes of valid UTF-8.
	for _, n := range []int{0, 1, 2, 3, 5, 125, 126, 4095, 4096, 4097, 65536, 1 << 20} {
		if b := makeText(n); len(b) != n || !utf8.Valid(b) {
			t.Fatalf("makeText(%d): %d bytes, valid=%v", n, len(b), utf8.Valid(b))
		}
	}
}
