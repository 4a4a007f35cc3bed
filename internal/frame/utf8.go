package frame

import "encoding/binary"

// UTF8 validates UTF-8 incrementally, so a text message can be checked
// fragment by fragment and rejected at the first byte that cannot be part
// of a valid sequence (RFC 6455 section 8.1: fail fast). The zero value is
// ready to use.
type UTF8 struct {
	need   uint8 // continuation bytes still expected
	lo, hi byte  // allowed range of the next continuation byte
}

// Reset forgets any partial sequence.
func (v *UTF8) Reset() { *v = UTF8{} }

// Complete reports whether no multi-byte sequence is left open.
func (v *UTF8) Complete() bool { return v.need == 0 }

// Write feeds p and reports whether everything seen so far can still be
// the prefix of valid UTF-8.
func (v *UTF8) Write(p []byte) bool {
	i := 0
	for i < len(p) {
		if v.need > 0 {
			c := p[i]
			if c < v.lo || c > v.hi {
				return false
			}
			v.need--
			v.lo, v.hi = 0x80, 0xBF
			i++
			continue
		}
		// ASCII runs dominate real text: eight bytes per step.
		for i+8 <= len(p) && binary.LittleEndian.Uint64(p[i:])&0x8080808080808080 == 0 {
			i += 8
		}
		if i == len(p) {
			break
		}
		c := p[i]
		i++
		if c < 0x80 {
			continue
		}
		// Ranges of RFC 3629 section 4: no overlongs, no surrogates, nothing past U+10FFFF.
		switch {
		case c >= 0xC2 && c <= 0xDF:
			v.need, v.lo, v.hi = 1, 0x80, 0xBF
		case c == 0xE0:
			v.need, v.lo, v.hi = 2, 0xA0, 0xBF
		case c == 0xED:
			v.need, v.lo, v.hi = 2, 0x80, 0x9F
		case c >= 0xE1 && c <= 0xEF:
			v.need, v.lo, v.hi = 2, 0x80, 0xBF
		case c == 0xF0:
			v.need, v.lo, v.hi = 3, 0x90, 0xBF
		case c >= 0xF1 && c <= 0xF3:
			v.need, v.lo, v.hi = 3, 0x80, 0xBF
		case c == 0xF4:
			v.need, v.lo, v.hi = 3, 0x80, 0x8F
		default:
			return false
		}
	}
	return true
}

// ValidUTF8 reports whether p is complete, valid UTF-8.
func ValidUTF8(p []byte) bool {
	var v UTF8
	return v.Write(p) && v.Complete()
}

// IncompleteTail returns how many bytes at the end of p form the valid
// start of a multi-byte sequence that is not finished yet (0 to 3). It does
// not validate the rest of p; a byte that cannot start a sequence is not a
// tail.
func IncompleteTail(p []byte) int {
	for k := 1; k <= 3 && k <= len(p); k++ {
		c := p[len(p)-k]
		if c&0xC0 == 0x80 { // continuation byte: look further back
			continue
		}
		var size int
		switch {
		case c >= 0xC2 && c <= 0xDF:
			size = 2
		case c >= 0xE0 && c <= 0xEF:
			size = 3
		case c >= 0xF0 && c <= 0xF4:
			size = 4
		default:
			return 0
		}
		if size > k {
			return k
		}
		return 0
	}
	return 0
}
