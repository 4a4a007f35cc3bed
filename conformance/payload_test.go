package conformance

import (
	"bytes"
	"sync"
	"unicode/utf8"
)

// textBlock is valid UTF-8 mixing 1-, 2-, 3- and 4-byte sequences, so that
// cuts at arbitrary offsets land inside code points.
var textBlock = func() []byte {
	var b []byte
	for len(b) < 4096 {
		b = append(b, "ginws ✓ Grüße · Ελληνικά · 日本語 · 𝄞𝅘𝅥𝅮 · ok; "...)
	}
	return b
}()

// makeText returns exactly n bytes of valid UTF-8.
func makeText(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	b := bytes.Repeat(textBlock, n/len(textBlock)+1)[:n]
	// Drop a partial code point at the end and pad with ASCII.
	end := n
	for i := n - 1; i >= 0 && i >= n-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:n]) {
				end = i
			}
			break
		}
	}
	for i := end; i < n; i++ {
		b[i] = '.'
	}
	return b
}

// makeBinary returns n bytes of a pattern with period 251 (a prime, so the
// pattern does not line up with fragment sizes) that covers all byte values.
func makeBinary(n int) []byte {
	block := make([]byte, 251)
	for i := range block {
		block[i] = byte(i*97 + 13)
	}
	return bytes.Repeat(block, n/len(block)+1)[:n]
}

var payloadCache = struct {
	sync.Mutex
	m map[[2]int][]byte
}{m: map[[2]int][]byte{}}

// cachedPayload shares large read-only payloads between rows.
func cachedPayload(text bool, n int) []byte {
	k := [2]int{0, n}
	if text {
		k[0] = 1
	}
	payloadCache.Lock()
	defer payloadCache.Unlock()
	if p, ok := payloadCache.m[k]; ok {
		return p
	}
	var p []byte
	if text {
		p = makeText(n)
	} else {
		p = makeBinary(n)
	}
	payloadCache.m[k] = p
	return p
}

// fragmentsOf splits p into fragments of size n (the last may be shorter;
// an empty p gives one empty fragment) as a message with opcode op.
func fragmentsOf(op byte, p []byte, n int) []frame {
	var out []frame
	for off := 0; ; off += n {
		end := min(off+n, len(p))
		fop := opCont
		if off == 0 {
			fop = op
		}
		out = append(out, frame{op: fop, fin: end == len(p), payload: p[off:end]})
		if end == len(p) {
			return out
		}
	}
}

// splitMessage splits p at the given offsets into a fragmented message.
func splitMessage(op byte, p []byte, cuts ...int) []frame {
	var out []frame
	prev := 0
	for _, c := range append(cuts, len(p)) {
		fop := opCont
		if prev == 0 && len(out) == 0 {
			fop = op
		}
		out = append(out, frame{op: fop, payload: p[prev:c]})
		prev = c
	}
	out[len(out)-1].fin = true
	return out
}

// framesAsSteps writes each frame in its own TCP write.
func framesAsSteps(frs []frame) []step {
	out := make([]step, len(frs))
	for i, fr := range frs {
		out[i] = f(fr)
	}
	return out
}
