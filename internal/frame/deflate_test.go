package frame

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// zframes frames a compressed payload as a client would: masked, RSV1 on
// the first frame only, cut into n fragments (n >= 1).
func zframes(op ws.OpCode, z []byte, n int) []byte {
	var out []byte
	mask := [4]byte{9, 8, 7, 6}
	for i := range n {
		lo, hi := len(z)*i/n, len(z)*(i+1)/n
		rsv, fop := byte(0), ws.OpContinuation
		if i == 0 {
			rsv, fop = RSV1, op
		}
		out = AppendFrame(out, i == n-1, rsv, fop, z[lo:hi], &mask)
	}
	return out
}

// deflateRef compresses p on its own, the way RFC 7692 section 7.2.1 says,
// with compress/flate directly (not with Compressor).
func deflateRef(t testing.TB, p []byte, level int) []byte {
	var b bytes.Buffer
	fw, err := flate.NewWriter(&b, level)
	require.NoError(t, err)
	_, _ = fw.Write(p)
	require.NoError(t, fw.Flush())
	return b.Bytes()[:b.Len()-4]
}

func inflatingReader(in []byte) *Reader {
	r := NewReader(bufio.NewReader(bytes.NewReader(in)))
	r.RSV, r.Inflate = RSV1, true
	return r
}

// readAllMessages reads whole messages with Reads of bufSize bytes until
// an error, and returns them with that error.
func readAllMessages(r *Reader, bufSize int) ([]msg, error) {
	var out []msg
	buf := make([]byte, bufSize)
	for {
		op, err := r.NextMessage()
		if err != nil {
			return out, err
		}
		var data []byte
		for {
			n, err := r.Read(buf)
			data = append(data, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				return out, err
			}
		}
		out = append(out, msg{op, string(data)})
	}
}

// The examples of RFC 7692 section 7.2.3.
func TestInflateRFC7692Examples(t *testing.T) {
	tests := []struct {
		name string
		in   [][]byte // messages
		want []string
	}{
		{"7.2.3.1 a message compressed", [][]byte{{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}}, []string{"Hello"}},
		{"7.2.3.2 sharing the LZ77 window", [][]byte{{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, {0xf2, 0x00, 0x11, 0x00, 0x00}}, []string{"Hello", "Hello"}},
		{"7.2.3.3 a block with no compression", [][]byte{{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}}, []string{"Hello"}},
		{"7.2.3.4 a block with BFINAL set", [][]byte{{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}}, []string{"Hello"}},
		{"7.2.3.5 two blocks in one message", [][]byte{{0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00}}, []string{"Hello"}},
		{"BFINAL, then the window goes on", [][]byte{{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}, {0xf2, 0x00, 0x11, 0x00, 0x00}}, []string{"Hello", "Hello"}},
	}
	for _, tc := range tests {
		for _, frags := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/%d fragments", tc.name, frags), func(t *testing.T) {
				var in []byte
				for _, m := range tc.in {
					in = append(in, zframes(ws.OpText, m, min(frags, len(m)))...)
				}
				got, err := readAllMessages(inflatingReader(in), 3)
				require.Equal(t, io.EOF, err)
				var want []msg
				for _, w := range tc.want {
					want = append(want, msg{ws.OpText, w})
				}
				assert.Equal(t, want, got)
			})
		}
	}
}

// zText is compressible text with multi-byte runes, n bytes long.
func zText(n int, seed uint64) []byte {
	words := []string{"lorem ", "ipsüm ", "dolor ", "sit ", "amet ", "✓ ", "𝄞 ", "{\"k\":", "\"value\"}"}
	r := rand.New(rand.NewPCG(seed, 1))
	var b []byte
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
	}
	b = b[:n]
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return append(b, bytes.Repeat([]byte("x"), n-len(b))...)
}

// Round trips through Compressor and Reader: sizes, fragments, Read sizes,
// with and without context takeover, compressed and plain messages mixed.
func TestInflateRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 2, 100, 4095, 4096, 32 << 10, 32<<10 + 1, 70 << 10, 150 << 10}
	for _, takeover := range []bool{false, true} {
		for _, level := range []int{flate.HuffmanOnly, flate.BestSpeed, flate.BestCompression} {
			// The stream, built once for every Read size.
			var zw *Compressor
			if takeover {
				zw = NewCompressor(level)
			}
			var in []byte
			var want []msg
			for i, n := range sizes {
				p := zText(n, uint64(i))
				op := ws.OpText
				if i%3 == 2 {
					op = ws.OpBinary
					for j := range p {
						p[j] ^= byte(j)
					}
				}
				want = append(want, msg{op, string(p)})
				if i%4 == 3 { // plain, between compressed ones
					in = append(in, AppendFrame(nil, true, 0, op, p, &testMask)...)
					continue
				}
				z := zw
				if !takeover {
					z = GetCompressor(level)
				}
				c, ok := z.Compress(nil, p, -1)
				require.True(t, ok)
				if !takeover {
					PutCompressor(z)
				}
				in = append(in, zframes(op, c, 1+i%4)...)
			}
			for _, bufSize := range []int{1, 7, 4096, 1 << 20} {
				if bufSize == 1 && (level != flate.BestSpeed || takeover) {
					continue // slow, and nothing new
				}
				t.Run(fmt.Sprintf("takeover=%v/level=%d/read=%d", takeover, level, bufSize), func(t *testing.T) {
					r := inflatingReader(in)
					r.NoContextTakeover = !takeover
					r.Limit = 1 << 20
					got, err := readAllMessages(r, bufSize)
					require.Equal(t, io.EOF, err)
					require.Equal(t, len(want), len(got))
					for i := range want {
						require.Equal(t, want[i], got[i], "message %d", i)
					}
				})
			}
		}
	}
}

// Context takeover over far more than the window, with back references
// reaching across messages, read in small pieces so the window is written
// in small pieces and wraps often; then skipped messages, which must be
// inflated on the way (they are part of the window).
func TestInflateWindowTakeover(t *testing.T) {
	zw := NewCompressor(flate.BestCompression)
	var in []byte
	var want []string
	r := rand.New(rand.NewPCG(1, 2))
	base := zText(40<<10, 5) // cut anywhere below: binary messages
	for i := range 200 {
		// Pieces of earlier text, from up to 32 KiB back.
		n := 1 + r.IntN(3000)
		off := r.IntN(len(base) - n)
		p := append([]byte(fmt.Sprintf("%d:", i)), base[off:off+n]...)
		c, ok := zw.Compress(nil, p, -1)
		require.True(t, ok)
		in = append(in, zframes(ws.OpBinary, c, 1+i%3)...)
		want = append(want, string(p))
	}
	for _, bufSize := range []int{5, 333, 64 << 10} {
		t.Run(fmt.Sprintf("read=%d", bufSize), func(t *testing.T) {
			rd := inflatingReader(in)
			got, err := readAllMessages(rd, bufSize)
			require.Equal(t, io.EOF, err)
			require.Len(t, got, len(want))
			for i := range want {
				require.Equal(t, want[i], got[i].Data, "message %d", i)
			}
		})
	}
	t.Run("skipping messages", func(t *testing.T) {
		rd := inflatingReader(in)
		buf := make([]byte, 100)
		for i := range want {
			_, err := rd.NextMessage()
			require.NoError(t, err)
			if i%2 == 0 {
				continue // not read at all: NextMessage inflates it
			}
			if i%4 == 1 {
				_, err := rd.Read(buf) // read in part
				require.True(t, err == nil || err == io.EOF)
				continue
			}
			data, err := io.ReadAll(rd)
			require.NoError(t, err)
			require.Equal(t, want[i], string(data), "message %d", i)
		}
	})
	t.Run("no context takeover given wrong", func(t *testing.T) {
		// A Reader told the peer does not use the window cannot inflate a
		// message that refers to it: that fails, it does not crash.
		rd := inflatingReader(in)
		rd.NoContextTakeover = true
		_, err := readAllMessages(rd, 4096)
		require.Error(t, err)
	})
}

// countingReader counts what is read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// A bomb is stopped at the limit: neither inflated whole nor read whole.
func TestInflateBomb(t *testing.T) {
	var chunk bytes.Buffer
	fw, _ := flate.NewWriter(&chunk, flate.BestCompression)
	_, _ = fw.Write(make([]byte, 1<<20))
	require.NoError(t, fw.Flush())
	z := bytes.Repeat(chunk.Bytes(), 32) // 32 MiB of zeros in about 33 KiB
	z = z[:len(z)-4]
	for _, limit := range []int64{64 << 10, 1 << 20} {
		for _, bufSize := range []int{100, 32 << 10, 1 << 20} {
			t.Run(fmt.Sprintf("limit=%d/read=%d", limit, bufSize), func(t *testing.T) {
				src := &countingReader{r: bytes.NewReader(zframes(ws.OpBinary, z, 4))}
				r := NewReader(bufio.NewReaderSize(src, 4096))
				r.RSV, r.Inflate, r.Limit = RSV1, true, limit
				_, err := r.NextMessage()
				require.NoError(t, err)
				total := 0
				buf := make([]byte, bufSize)
				for {
					n, err := r.Read(buf)
					total += n
					if err != nil {
						require.Equal(t, ErrMessageTooBig, err)
						break
					}
				}
				assert.LessOrEqual(t, int64(total), limit)
				assert.Less(t, src.n, 16<<10, "compressed bytes read of %d", len(z))
				_, err = r.Read(buf)
				assert.Equal(t, ErrMessageTooBig, err, "sticky")
			})
		}
	}
	t.Run("small limit: the compressed size is refused first", func(t *testing.T) {
		r := inflatingReader(zframes(ws.OpBinary, z, 4))
		r.Limit = 1000
		_, err := r.NextMessage()
		assert.Equal(t, ErrMessageTooBig, err)
	})
	t.Run("exactly the limit", func(t *testing.T) {
		r := inflatingReader(zframes(ws.OpBinary, deflateRef(t, make([]byte, 5000), 9), 1))
		r.Limit = 5000
		got, err := readAllMessages(r, 1000)
		require.Equal(t, io.EOF, err)
		require.Len(t, got, 1)
		assert.Len(t, got[0].Data, 5000)
	})
}

// The compressed size is capped from the headers, with slack for data
// that does not compress.
func TestInflateWireLimit(t *testing.T) {
	limit := int64(64 << 10)
	wl := wireLimit(limit)
	assert.Equal(t, limit+limit/64+1024, wl)
	assert.Equal(t, int64(1<<61+1<<55+1024), wireLimit(1<<61))
	assert.Equal(t, int64(9223372036854775807), wireLimit(9223372036854775807))
	// Incompressible data of exactly the limit fits.
	p := make([]byte, limit)
	rr := rand.New(rand.NewPCG(3, 4))
	for i := range p {
		p[i] = byte(rr.Uint32())
	}
	z := deflateRef(t, p, flate.BestSpeed)
	require.Greater(t, int64(len(z)), limit)
	r := inflatingReader(zframes(ws.OpBinary, z, 3))
	r.Limit = limit
	got, err := readAllMessages(r, 4096)
	require.Equal(t, io.EOF, err)
	require.Equal(t, string(p), got[0].Data)
	// Past the slack: refused from the header, before any payload. The
	// first fragment starts a stored block, so the decompressor asks for
	// more.
	mask := testMask
	stored := append([]byte{0x00, 0xff, 0xff, 0x00, 0x00}, make([]byte, 995)...)
	for _, in := range [][]byte{
		AppendHeader(nil, true, RSV1, ws.OpBinary, int(wl)+1, &mask),
		cat(AppendFrame(nil, false, RSV1, ws.OpBinary, stored, &mask), AppendHeader(nil, true, 0, ws.OpContinuation, int(wl)-999, &mask)),
		cat(AppendFrame(nil, false, RSV1, ws.OpBinary, stored, &mask), AppendHeader(nil, true, 0, ws.OpContinuation, 1<<62, &mask)),
	} {
		r := NewReader(bufio.NewReader(&strictReader{chunks: [][]byte{in}}))
		r.RSV, r.Inflate, r.Limit = RSV1, true, limit
		_, err := readAllMessages(r, 4096)
		assert.Equal(t, ErrMessageTooBig, err)
	}
	// A plain message keeps the exact limit.
	r = NewReader(bufio.NewReader(&strictReader{chunks: [][]byte{AppendHeader(nil, true, 0, ws.OpBinary, int(limit)+1, &mask)}}))
	r.RSV, r.Inflate, r.Limit = RSV1, true, limit
	_, err = readAllMessages(r, 4096)
	assert.Equal(t, ErrMessageTooBig, err)
}

func TestInflateBadData(t *testing.T) {
	hello := []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}
	tests := []struct {
		name string
		z    []byte
		want error
		data string // for a nil want
	}{
		{"reserved block type", []byte{0x07, 0x00}, ErrBadCompressed, ""},
		{"bad stored length", []byte{0x00, 0x05, 0x00, 0xfb, 0xff, 'H', 'e', 'l', 'l', 'o'}, ErrBadCompressed, ""},
		{"stored block cut short", []byte{0x00, 0x64, 0x00, 0x9b, 0xff, 'a', 'b', 'c'}, ErrBadCompressed, ""},
		{"garbage", []byte("\xff\xff\xff\xff\xff\xff\xff\xff"), ErrBadCompressed, ""},
		{"bytes after a final block are ignored", append([]byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, "trailing junk"...), nil, "Hello"},
		{"empty payload", nil, ErrBadCompressed, ""}, // an empty message compresses to 00
		{"empty message, compressed", []byte{0x00}, nil, ""},
		{"RFC example", hello, nil, "Hello"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := cat(zframes(ws.OpBinary, tc.z, 1), zframes(ws.OpText, hello, 1))
			r := inflatingReader(in)
			r.NoContextTakeover = true
			got, err := readAllMessages(r, 3)
			if tc.want != nil {
				assert.Equal(t, tc.want, err)
				assert.Empty(t, got)
				assert.Equal(t, tc.want, r.Err(), "sticky")
				return
			}
			require.Equal(t, io.EOF, err)
			assert.Equal(t, []msg{{ws.OpBinary, tc.data}, {ws.OpText, "Hello"}}, got)
		})
	}
}

func TestInflateUTF8(t *testing.T) {
	t.Run("valid, runes cut by every Read", func(t *testing.T) {
		p := zText(10000, 3)
		for _, n := range []int{1, 2, 3} {
			r := inflatingReader(zframes(ws.OpText, deflateRef(t, p, 6), 5))
			got, err := readAllMessages(r, n)
			require.Equal(t, io.EOF, err)
			require.Equal(t, string(p), got[0].Data)
		}
	})
	for _, tc := range []struct{ name, text string }{
		{"invalid byte", "fine \xff"},
		{"surrogate", "ok \xed\xa0\x80"},
		{"cut at the end", "caf\xc3"},
		{"overlong", "\xc0\xaf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := inflatingReader(zframes(ws.OpText, deflateRef(t, []byte(tc.text), 6), 1))
			_, err := readAllMessages(r, 4096)
			assert.Equal(t, ErrInvalidUTF8, err)
		})
	}
	t.Run("binary is not checked", func(t *testing.T) {
		r := inflatingReader(zframes(ws.OpBinary, deflateRef(t, []byte("\xff\xfe"), 6), 1))
		got, err := readAllMessages(r, 4096)
		require.Equal(t, io.EOF, err)
		assert.Equal(t, "\xff\xfe", got[0].Data)
	})
	t.Run("fails fast", func(t *testing.T) {
		// The bad bytes come first; only part of the message has arrived.
		z := deflateRef(t, append([]byte("\xc0\xaf"), zText(200<<10, 1)...), 6)
		in := AppendFrame(nil, false, RSV1, ws.OpText, z[:len(z)/2], &testMask)
		r := NewReader(bufio.NewReader(&strictReader{t: t, chunks: [][]byte{in}, what: "the rest of a message known to be bad"}))
		r.RSV, r.Inflate = RSV1, true
		_, err := readAllMessages(r, 512)
		assert.Equal(t, ErrInvalidUTF8, err)
	})
}

// timeoutSource gives its bytes, then a timeout, then the rest.
type timeoutSource struct {
	parts [][]byte
}

func (s *timeoutSource) Read(p []byte) (int, error) {
	if len(s.parts) == 0 {
		return 0, io.EOF
	}
	if s.parts[0] == nil {
		s.parts = s.parts[1:]
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	n := copy(p, s.parts[0])
	if s.parts[0] = s.parts[0][n:]; len(s.parts[0]) == 0 {
		s.parts = s.parts[1:]
	}
	return n, nil
}

// A read error inside a compressed message stops the Reader: compress/flate
// cannot resume after one, so a timeout there is final.
func TestInflateTimeoutIsFinal(t *testing.T) {
	z := deflateRef(t, zText(100<<10, 2), 6)
	in := zframes(ws.OpText, z, 1)
	src := &timeoutSource{parts: [][]byte{in[:len(in)/2], nil, in[len(in)/2:]}}
	r := NewReader(bufio.NewReader(src))
	r.RSV, r.Inflate = RSV1, true
	_, err := r.NextMessage()
	require.NoError(t, err)
	buf := make([]byte, 1000)
	for err == nil {
		_, err = r.Read(buf)
	}
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "err = %v", err)
	assert.Equal(t, err, r.Err())
	_, err2 := r.Read(buf)
	assert.Equal(t, err, err2)
	assert.Nil(t, r.inf, "the decompressor went back to the pool")
}

// Control frames between the fragments of a compressed message are
// dispatched; a close frame there stops the Reader with OnControl's error.
func TestInflateControlBetweenFragments(t *testing.T) {
	z := deflateRef(t, []byte(strings.Repeat("hello ", 1000)), 6)
	half := len(z) / 2
	mask := testMask
	stop := errors.New("closed")
	var seen []string
	onControl := func(op ws.OpCode, p []byte) error {
		seen = append(seen, fmt.Sprintf("%d %s", op, p))
		if op == ws.OpClose {
			return stop
		}
		return nil
	}
	t.Run("ping", func(t *testing.T) {
		seen = nil
		in := cat(AppendFrame(nil, false, RSV1, ws.OpText, z[:half], &mask), cframe(true, 0, ws.OpPing, "p"),
			AppendFrame(nil, true, 0, ws.OpContinuation, z[half:], &mask))
		r := inflatingReader(in)
		r.OnControl = ControlFunc(onControl)
		got, err := readAllMessages(r, 100)
		require.Equal(t, io.EOF, err)
		assert.Equal(t, strings.Repeat("hello ", 1000), got[0].Data)
		assert.Equal(t, []string{"9 p"}, seen)
	})
	t.Run("close", func(t *testing.T) {
		seen = nil
		in := cat(AppendFrame(nil, false, RSV1, ws.OpText, z[:half], &mask), cframe(true, 0, ws.OpClose, "\x03\xe8"))
		r := inflatingReader(in)
		r.OnControl = ControlFunc(onControl)
		_, err := readAllMessages(r, 100)
		assert.Equal(t, stop, err)
	})
}

func TestInflateReleaseAndReset(t *testing.T) {
	z := deflateRef(t, zText(50<<10, 1), 6)
	in := zframes(ws.OpText, z, 1)
	r := inflatingReader(in)
	_, err := r.NextMessage()
	require.NoError(t, err)
	_, err = r.Read(make([]byte, 10))
	require.NoError(t, err)
	require.NotNil(t, r.inf)
	require.True(t, r.Open())
	r.Release()
	assert.Nil(t, r.inf)
	assert.Nil(t, r.win.b)
	_, err = r.Read(make([]byte, 10))
	assert.Error(t, err)
	_, err = r.NextMessage()
	assert.Error(t, err)

	// Reset clears the window too: a stream starts with none.
	r.Reset(bufio.NewReader(bytes.NewReader(in)))
	got, err := readAllMessages(r, 4096)
	require.Equal(t, io.EOF, err)
	assert.Len(t, got[0].Data, 50<<10)
	assert.NotEmpty(t, r.win.b)
	r.Reset(bufio.NewReader(bytes.NewReader(nil)))
	assert.Empty(t, r.win.b)
	assert.True(t, r.Inflate, "options survive Reset")
}

func TestWindow(t *testing.T) {
	var w window
	var all []byte
	r := rand.New(rand.NewPCG(5, 6))
	var scratch []byte
	for i := range 2000 {
		n := r.IntN(600)
		if i%300 == 299 {
			n = WindowSize + r.IntN(1000)
		}
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		w.write(p)
		all = append(all, p...)
		want := all[max(0, len(all)-WindowSize):]
		require.Equal(t, want, w.ordered(&scratch), "after write %d", i)
		require.LessOrEqual(t, cap(w.b), WindowSize)
	}
}

func TestCompressor(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	random := make([]byte, 5000)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	text := zText(5000, 9)
	for _, level := range []int{flate.HuffmanOnly, flate.BestSpeed, 5, flate.BestCompression} {
		z := GetCompressor(level)
		_, ok := z.Compress([]byte("prefix"), random, len(random)-1)
		assert.False(t, ok, "level %d: random data does not compress", level)
		PutCompressor(z)
		z = GetCompressor(level) // reset after giving up
		out, ok := z.Compress([]byte("prefix"), text, len(text)-1)
		require.True(t, ok)
		PutCompressor(z)
		require.Equal(t, "prefix", string(out[:6]))
		got, err := io.ReadAll(flate.NewReader(bytes.NewReader(append(out[6:], inflateTail[:]...))))
		require.NoError(t, err)
		assert.Equal(t, text, got)
		assert.Less(t, len(out), len(text)*3/4, "level %d", level)
	}
	assert.True(t, ValidLevel(-2) && ValidLevel(9) && ValidLevel(-1) && ValidLevel(0))
	assert.False(t, ValidLevel(-3) || ValidLevel(10))
	assert.Panics(t, func() { NewCompressor(42) })
}

// Reading compressed messages allocates nothing of its own once the pools
// and the window are warm. compress/flate itself allocates the link
// tables of a dynamic Huffman block with codes over 9 bits (a few per
// message of real text), so the zero is checked on stored blocks, and the
// count for real text is only logged.
func TestInflateAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	for _, level := range []int{flate.NoCompression, flate.BestSpeed} {
		for _, takeover := range []bool{false, true} {
			t.Run(fmt.Sprintf("level=%d/takeover=%v", level, takeover), func(t *testing.T) {
				var in []byte
				zw := NewCompressor(level)
				for i := range 50 {
					z := zw
					if !takeover {
						z = GetCompressor(level)
					}
					c, _ := z.Compress(nil, zText(3000, uint64(i%4)), -1)
					in = append(in, zframes(ws.OpText, c, 2)...)
				}
				src := bytes.NewReader(in)
				br := bufio.NewReader(src)
				r := NewReader(br)
				r.RSV, r.Inflate, r.NoContextTakeover = RSV1, true, !takeover
				buf := make([]byte, 4096)
				readOne := func() {
					if _, err := r.NextMessage(); err == io.EOF {
						src.Reset(in)
						br.Reset(src)
						r.Reset(br)
						return
					}
					for {
						if _, err := r.Read(buf); err != nil {
							if err != io.EOF {
								t.Fatal(err)
							}
							return
						}
					}
				}
				for range 200 {
					readOne()
				}
				allocs := testing.AllocsPerRun(200, readOne)
				t.Logf("allocs per message: %v", allocs)
				if level == flate.NoCompression && !raceOn {
					assert.Less(t, allocs, 0.1) // a pool emptied by GC may refill now and then
				}
			})
		}
	}
}

// FuzzInflate feeds the inflate path arbitrary compressed payloads, cut
// into fragments, with and without context takeover, and checks that the
// Reader never panics, never returns more than Limit bytes, ends with
// io.EOF or a protocol error, and agrees with compress/flate on what
// inflates; then it round-trips data through Compressor and the Reader.
func FuzzInflate(f *testing.F) {
	f.Add([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, uint8(1), false)
	f.Add([]byte{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}, uint8(3), true)
	f.Add([]byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}, uint8(2), false)
	f.Add([]byte{0x07, 0x00}, uint8(1), false)
	f.Add([]byte("the same words the same words the same words"), uint8(4), true)
	f.Add([]byte("\xc0\xaf"), uint8(1), false)
	f.Fuzz(func(t *testing.T, data []byte, frags uint8, text bool) {
		const limit = 1 << 16
		n := max(1, min(int(frags%8), len(data)))
		op := ws.OpBinary
		if text {
			op = ws.OpText
		}
		// 1. data as a compressed payload.
		r := inflatingReader(zframes(op, data, n))
		r.Limit = limit
		msgs, err := readAllMessages(r, 1+int(frags)*37)
		var fe *Error
		if err != io.EOF && !errors.As(err, &fe) {
			t.Fatalf("error %v (%T): want io.EOF or a protocol error", err, err)
		}
		ref, refErr := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(append(append([]byte(nil), data...), inflateTail[:]...))), limit+1))
		switch {
		case err == io.EOF:
			require.Len(t, msgs, 1)
			require.LessOrEqual(t, len(msgs[0].Data), limit)
			require.NoError(t, refErr, "the Reader inflated what compress/flate does not")
			require.Equal(t, string(ref), msgs[0].Data)
			if text {
				require.True(t, utf8.ValidString(msgs[0].Data))
			}
		case fe.Code == CloseMessageTooBig:
			require.Greater(t, len(ref), limit)
		case err == ErrBadCompressed:
			require.Error(t, refErr)
		case fe.Code == CloseInvalidPayload: // UTF-8
			require.True(t, text)
		default:
			t.Fatalf("unexpected %v", err)
		}
		// 2. data as a message: compressed, framed, read back.
		if text && !utf8.Valid(data) {
			return
		}
		var in []byte
		zw := NewCompressor(int(frags%12) - 2)
		for range 2 {
			c, ok := zw.Compress(nil, data, -1)
			require.True(t, ok)
			in = append(in, zframes(op, c, n)...)
		}
		r = inflatingReader(in)
		msgs, err = readAllMessages(r, 1+int(frags)*37)
		require.Equal(t, io.EOF, err)
		require.Equal(t, []msg{{op, string(data)}, {op, string(data)}}, msgs)
	})
}
