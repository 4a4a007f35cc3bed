package frame

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var testMask = [4]byte{0x37, 0xFA, 0x21, 0x3D}

// cframe is a masked (client) frame.
func cframe(fin bool, rsv byte, op ws.OpCode, p string) []byte {
	m := testMask
	return AppendFrame(nil, fin, rsv, op, []byte(p), &m)
}

// cframeMask is a client frame with its own mask.
func cframeMask(mask [4]byte, fin bool, op ws.OpCode, p string) []byte {
	return AppendFrame(nil, fin, 0, op, []byte(p), &mask)
}

// sframe is an unmasked (server) frame.
func sframe(fin bool, rsv byte, op ws.OpCode, p string) []byte {
	return AppendFrame(nil, fin, rsv, op, []byte(p), nil)
}

// cheader is the header of a masked frame, without its payload.
func cheader(fin bool, op ws.OpCode, n int) []byte {
	m := testMask
	return AppendHeader(nil, fin, 0, op, n, &m)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

type msg struct {
	Op   ws.OpCode
	Data string
}

type ctl struct {
	Op   ws.OpCode
	Data string
}

// readMessages reads whole messages until an error and returns them with
// that error (io.EOF at a clean end of the stream). Each message is read
// with Reads of bufSize bytes.
func readMessages(r *Reader, bufSize int) ([]msg, error) {
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
			if n < 0 || n > len(buf) {
				panic(fmt.Sprintf("Read returned n = %d for a buffer of %d", n, len(buf)))
			}
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

// feeds are the ways the bytes reach the bufio.Reader: all at once, one
// byte per Read (every Peek and payload read gets split), and in 3-byte
// pieces.
var feeds = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one-byte", iotest.OneByteReader},
	{"three-byte", func(r io.Reader) io.Reader { return &chunkReader{r: r, n: 3} }},
}

type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

func TestReaderRules(t *testing.T) {
	long := strings.Repeat("p", 126)
	type tcase struct {
		name   string
		client bool  // Reader.Client
		rsv    byte  // Reader.RSV
		limit  int64 // Reader.Limit
		in     []byte
		want   []msg // messages read before err
		ctl    []ctl // control frames seen
		err    error // exact error at the end; io.EOF for a clean end
	}
	tests := []tcase{
		// Masking (RFC 6455 section 5.1, 5.3).
		{name: "masked client frames", in: cat(cframe(true, 0, ws.OpText, "hi"), cframe(true, 0, ws.OpBinary, "\x00\xff")),
			want: []msg{{ws.OpText, "hi"}, {ws.OpBinary, "\x00\xff"}}, err: io.EOF},
		{name: "unmasked client frame", in: sframe(true, 0, ws.OpText, "hi"), err: ErrUnmasked},
		{name: "unmasked client ping", in: sframe(true, 0, ws.OpPing, ""), err: ErrUnmasked},
		{name: "unmasked continuation", in: cat(cframe(false, 0, ws.OpText, "a"), sframe(true, 0, ws.OpContinuation, "b")), err: ErrUnmasked},
		{name: "masked server frame", client: true, in: cframe(true, 0, ws.OpText, "hi"), err: ErrMasked},
		{name: "masked server pong", client: true, in: cframe(true, 0, ws.OpPong, ""), err: ErrMasked},
		{name: "unmasked server frames", client: true, in: cat(sframe(true, 0, ws.OpText, "hi"), sframe(true, 0, ws.OpPing, "p")),
			want: []msg{{ws.OpText, "hi"}}, ctl: []ctl{{ws.OpPing, "p"}}, err: io.EOF},

		// Reserved bits (section 5.2).
		{name: "RSV1 without extension", in: cframe(true, RSV1, ws.OpText, "x"), err: ErrReservedBits},
		{name: "RSV2", in: cframe(true, 0x2, ws.OpBinary, "x"), err: ErrReservedBits},
		{name: "RSV3", in: cframe(true, 0x1, ws.OpBinary, "x"), err: ErrReservedBits},
		{name: "RSV on ping", in: cframe(true, 0x2, ws.OpPing, ""), err: ErrReservedBits},
		{name: "RSV1 without extension on ping", in: cframe(true, RSV1, ws.OpPing, ""), err: ErrReservedBits},
		{name: "RSV1 negotiated", rsv: RSV1, in: cframe(true, RSV1, ws.OpBinary, "zz"), want: []msg{{ws.OpBinary, "zz"}}, err: io.EOF},
		{name: "RSV2 with RSV1 negotiated", rsv: RSV1, in: cframe(true, 0x2, ws.OpBinary, "x"), err: ErrReservedBits},
		{name: "RSV1 on continuation", rsv: RSV1, in: cat(cframe(false, RSV1, ws.OpText, "a"), cframe(true, RSV1, ws.OpContinuation, "b")), err: ErrCompressedControl},
		{name: "RSV1 on ping", rsv: RSV1, in: cframe(true, RSV1, ws.OpPing, ""), err: ErrCompressedControl},
		{name: "RSV1 on close", rsv: RSV1, in: cframe(true, RSV1, ws.OpClose, ""), err: ErrCompressedControl},
		{name: "RSV1 negotiated, plain message", rsv: RSV1, in: cframe(true, 0, ws.OpText, "t"), want: []msg{{ws.OpText, "t"}}, err: io.EOF},

		// Control frames (section 5.5).
		{name: "ping of 125 bytes", in: cframe(true, 0, ws.OpPing, long[:125]), ctl: []ctl{{ws.OpPing, long[:125]}}, err: io.EOF},
		{name: "ping of 126 bytes", in: cframe(true, 0, ws.OpPing, long), err: ErrControlTooLong},
		{name: "pong of 126 bytes", in: cframe(true, 0, ws.OpPong, long), err: ErrControlTooLong},
		{name: "close of 126 bytes", in: cframe(true, 0, ws.OpClose, "\x03\xe8"+long[:124]), err: ErrControlTooLong},
		{name: "ping with 64-bit length", in: cheader(true, ws.OpPing, 1<<16), err: ErrControlTooLong},
		{name: "fragmented ping", in: cframe(false, 0, ws.OpPing, "p"), err: ErrControlFragmented},
		{name: "fragmented close", in: cframe(false, 0, ws.OpClose, ""), err: ErrControlFragmented},
		{name: "fragmented pong inside a message", in: cat(cframe(false, 0, ws.OpText, "a"), cframe(false, 0, ws.OpPong, "")), err: ErrControlFragmented},

		// Fragmentation (section 5.4).
		{name: "continuation without start", in: cframe(true, 0, ws.OpContinuation, "x"), err: ErrUnexpectedContinuation},
		{name: "continuation after a whole message", in: cat(cframe(true, 0, ws.OpText, "a"), cframe(true, 0, ws.OpContinuation, "b")),
			want: []msg{{ws.OpText, "a"}}, err: ErrUnexpectedContinuation},
		{name: "text while fragmented", in: cat(cframe(false, 0, ws.OpText, "a"), cframe(true, 0, ws.OpText, "b")), err: ErrExpectedContinuation},
		{name: "binary while fragmented", in: cat(cframe(false, 0, ws.OpBinary, "a"), cframe(true, 0, ws.OpBinary, "b")), err: ErrExpectedContinuation},
		{name: "fragmented message", in: cat(cframe(false, 0, ws.OpBinary, "ab"), cframe(false, 0, ws.OpContinuation, ""), cframe(true, 0, ws.OpContinuation, "cd")),
			want: []msg{{ws.OpBinary, "abcd"}}, err: io.EOF},

		// Length (section 5.2).
		{name: "64-bit length with MSB", in: []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, err: ErrLengthOverflow},
		{name: "64-bit length with MSB on continuation", in: cat(cframe(false, 0, ws.OpBinary, "a"), []byte{0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4}), err: ErrLengthOverflow},

		// Message limit.
		{name: "message at the limit", limit: 4, in: cframe(true, 0, ws.OpBinary, "abcd"), want: []msg{{ws.OpBinary, "abcd"}}, err: io.EOF},
		{name: "message over the limit", limit: 4, in: cframe(true, 0, ws.OpBinary, "abcde"), err: ErrMessageTooBig},
		{name: "fragments at the limit", limit: 4, in: cat(cframe(false, 0, ws.OpText, "ab"), cframe(true, 0, ws.OpContinuation, "cd")),
			want: []msg{{ws.OpText, "abcd"}}, err: io.EOF},
		{name: "fragments over the limit", limit: 4, in: cat(cframe(false, 0, ws.OpText, "ab"), cframe(false, 0, ws.OpContinuation, "cd"), cframe(true, 0, ws.OpContinuation, "e")),
			err: ErrMessageTooBig},
		{name: "limit is per message", limit: 4, in: cat(cframe(true, 0, ws.OpText, "abcd"), cframe(true, 0, ws.OpText, "efgh")),
			want: []msg{{ws.OpText, "abcd"}, {ws.OpText, "efgh"}}, err: io.EOF},
		{name: "control frames do not count", limit: 2, in: cat(cframe(false, 0, ws.OpText, "ab"), cframe(true, 0, ws.OpPing, "pingpong"), cframe(true, 0, ws.OpContinuation, "")),
			want: []msg{{ws.OpText, "ab"}}, ctl: []ctl{{ws.OpPing, "pingpong"}}, err: io.EOF},
		{name: "no limit", limit: 0, in: cframe(true, 0, ws.OpBinary, long), want: []msg{{ws.OpBinary, long}}, err: io.EOF},
		{name: "negative limit is no limit", limit: -1, in: cframe(true, 0, ws.OpBinary, long), want: []msg{{ws.OpBinary, long}}, err: io.EOF},

		// Text must be UTF-8 (section 8.1).
		{name: "invalid UTF-8", in: cframe(true, 0, ws.OpText, "ok\xff"), err: ErrInvalidUTF8},
		{name: "surrogate", in: cframe(true, 0, ws.OpText, "\xed\xa0\x80"), err: ErrInvalidUTF8},
		{name: "truncated at message end", in: cframe(true, 0, ws.OpText, "ok\xe2\x82"), err: ErrInvalidUTF8},
		{name: "truncated in last empty fragment", in: cat(cframe(false, 0, ws.OpText, "\xe2\x82"), cframe(true, 0, ws.OpContinuation, "")), err: ErrInvalidUTF8},
		{name: "code point split across fragments", in: cat(cframe(false, 0, ws.OpText, "\xf0"), cframe(false, 0, ws.OpContinuation, "\x9f\x98"), cframe(true, 0, ws.OpContinuation, "\x80!")),
			want: []msg{{ws.OpText, "\U0001F600!"}}, err: io.EOF},
		{name: "bad byte in the second fragment", in: cat(cframe(false, 0, ws.OpText, "\xe2\x82"), cframe(true, 0, ws.OpContinuation, "A")), err: ErrInvalidUTF8},
		{name: "binary is not checked", in: cframe(true, 0, ws.OpBinary, "\xff\xfe"), want: []msg{{ws.OpBinary, "\xff\xfe"}}, err: io.EOF},
		{name: "compressed text is not checked", rsv: RSV1, in: cframe(true, RSV1, ws.OpText, "\xff"), want: []msg{{ws.OpText, "\xff"}}, err: io.EOF},

		// Close payloads (section 5.5.1, 7.4).
		{name: "empty close", in: cframe(true, 0, ws.OpClose, ""), ctl: []ctl{{ws.OpClose, ""}}, err: io.EOF},
		{name: "close with code and reason", in: cframe(true, 0, ws.OpClose, "\x03\xe8bye"), ctl: []ctl{{ws.OpClose, "\x03\xe8bye"}}, err: io.EOF},
		{name: "close of one byte", in: cframe(true, 0, ws.OpClose, "\x03"), err: ErrCloseOneByte},
		{name: "close with code 1005", in: cframe(true, 0, ws.OpClose, "\x03\xed"), err: ErrInvalidCloseCode},
		{name: "close with code 999", in: cframe(true, 0, ws.OpClose, "\x03\xe7"), err: ErrInvalidCloseCode},
		{name: "close with code 5000", in: cframe(true, 0, ws.OpClose, "\x13\x88"), err: ErrInvalidCloseCode},
		{name: "close with a bad reason", in: cframe(true, 0, ws.OpClose, "\x03\xe8\xff"), err: ErrCloseReasonUTF8},
		{name: "bad close inside a message", in: cat(cframe(false, 0, ws.OpText, "a"), cframe(true, 0, ws.OpClose, "\x00\x00")), err: ErrInvalidCloseCode},

		// I/O endings.
		{name: "empty stream", in: nil, err: io.EOF},
		{name: "one byte of header", in: []byte{0x81}, err: io.ErrUnexpectedEOF},
		{name: "cut in the mask", in: cframe(true, 0, ws.OpText, "abc")[:4], err: io.ErrUnexpectedEOF},
		{name: "cut in the payload", in: cframe(true, 0, ws.OpText, "abc")[:8], err: io.ErrUnexpectedEOF},
		{name: "cut in a control payload", in: cframe(true, 0, ws.OpPing, "abc")[:7], err: io.ErrUnexpectedEOF},
	}
	for op := ws.OpCode(3); op <= 0xF; op++ {
		if op == ws.OpClose || op == ws.OpPing || op == ws.OpPong {
			continue
		}
		tests = append(tests,
			tcase{name: fmt.Sprintf("reserved opcode %X", byte(op)), in: cframe(true, 0, op, ""), err: ErrReservedOpcode},
			tcase{name: fmt.Sprintf("reserved opcode %X inside a message", byte(op)), in: cat(cframe(false, 0, ws.OpText, "a"), cframe(true, 0, op, "b")), err: ErrReservedOpcode},
		)
	}
	for _, tc := range tests {
		for _, feed := range feeds {
			for _, bufSize := range []int{1, 7, 512} {
				t.Run(fmt.Sprintf("%s/%s/buf%d", tc.name, feed.name, bufSize), func(t *testing.T) {
					var ctls []ctl
					r := NewReader(bufio.NewReader(feed.wrap(bytes.NewReader(tc.in))))
					r.Client, r.RSV, r.Limit = tc.client, tc.rsv, tc.limit
					r.OnControl = ControlFunc(func(op ws.OpCode, p []byte) error {
						ctls = append(ctls, ctl{op, string(p)})
						return nil
					})
					got, err := readMessages(r, bufSize)
					require.Truef(t, err == tc.err, "err = %v, want %v", err, tc.err)
					assert.Equal(t, tc.want, got)
					assert.Equal(t, tc.ctl, ctls)

					var pe *Error
					if errors.As(err, &pe) {
						// Violations are sticky: every later call reports it.
						assert.Same(t, pe, r.Err())
						_, err2 := r.NextMessage()
						assert.Same(t, pe, err2)
						_, err2 = r.Read(make([]byte, 4))
						assert.Same(t, pe, err2)
						_, err2 = r.Advance()
						assert.Same(t, pe, err2)
						assert.False(t, r.Buffered())
					} else if err == io.EOF {
						assert.NoError(t, r.Err())
					}
				})
			}
		}
	}
}

// strictReader hands out its chunks one per Read and fails the test (when
// t is set) if it is read past them: what is left unread must not be
// needed.
type strictReader struct {
	t        *testing.T
	chunks   [][]byte
	what     string
	overread bool
}

var errOverread = errors.New("strictReader: read past the available bytes")

func (s *strictReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		s.overread = true
		if s.t != nil {
			s.t.Errorf("read past the available bytes: %s", s.what)
		}
		return 0, errOverread
	}
	n := copy(p, s.chunks[0])
	s.chunks[0] = s.chunks[0][n:]
	if len(s.chunks[0]) == 0 {
		s.chunks = s.chunks[1:]
	}
	return n, nil
}

func TestReaderLimitCheckedBeforePayload(t *testing.T) {
	tests := []struct {
		name  string
		limit int64
		in    []byte // all the peer has sent: the payload over the limit never comes
	}{
		{"16-bit length", 100, cheader(true, ws.OpBinary, 101)},
		{"64-bit length", 1 << 20, cheader(true, ws.OpBinary, 1<<40)},
		{"largest length", 1 << 20, cheader(true, ws.OpText, math.MaxInt64)},
		{"second fragment", 10, cat(cframe(false, 0, ws.OpBinary, "123456"), cheader(true, ws.OpContinuation, 5))},
		{"third fragment", 10, cat(cframe(false, 0, ws.OpBinary, "1234"), cframe(false, 0, ws.OpContinuation, "5678"), cheader(false, ws.OpContinuation, 3))},
		{"fragment after a ping", 10, cat(cframe(false, 0, ws.OpText, "123456"), cframe(true, 0, ws.OpPing, "0123456789"), cheader(true, ws.OpContinuation, 5))},
	}
	for _, tc := range tests {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/one-byte=%v", tc.name, oneByte), func(t *testing.T) {
				chunks := [][]byte{tc.in}
				if oneByte {
					chunks = nil
					for i := range tc.in {
						chunks = append(chunks, tc.in[i:i+1])
					}
				}
				src := &strictReader{t: t, chunks: chunks, what: "the payload over the limit"}
				r := NewReader(bufio.NewReader(src))
				r.Limit = tc.limit
				got, err := readMessages(r, 3)
				require.Truef(t, err == ErrMessageTooBig, "err = %v", err)
				assert.Empty(t, got)
				assert.True(t, errors.Is(err, ErrMessageTooBig))
				assert.Equal(t, CloseMessageTooBig, err.(*Error).Code)
			})
		}
	}
}

// TestReaderLimitFragmentOverflow: the size of a fragmented message is the
// sum of its fragment lengths. A continuation whose 63-bit length makes
// that sum overflow int64 must still be over the limit.
func TestReaderLimitFragmentOverflow(t *testing.T) {
	const first = 50
	in := cat(
		cframe(false, 0, ws.OpBinary, strings.Repeat("a", first)),
		cheader(true, ws.OpContinuation, math.MaxInt64-10), // first + this wraps below zero
	)
	src := &strictReader{t: t, chunks: [][]byte{in}, what: "the payload of a continuation frame over the limit"}
	r := NewReader(bufio.NewReader(src))
	r.Limit = 100

	_, err := r.NextMessage()
	require.NoError(t, err)
	buf := make([]byte, 64)
	n, err := r.Read(buf)
	require.NoError(t, err)
	require.Equal(t, first, n)

	// The complaint about reading on is made by the check below.
	src.t = nil
	_, err = r.Read(buf)
	if err != ErrMessageTooBig && r.Left() > 0 {
		t.Fatalf("Limit=100, first fragment of %d bytes, continuation header with length %d "+
			"(0x7FFFFFFFFFFFFFF5): want ErrMessageTooBig from the header, got %v (payload read "+
			"attempted: %v) and the Reader expects %d more payload bytes: h.Length+r.size "+
			"overflowed int64 and passed the limit check",
			first, int64(math.MaxInt64-10), err, src.overread, r.Left())
	}
	require.Truef(t, err == ErrMessageTooBig, "err = %v", err)
	require.False(t, src.overread)
}

func TestReaderUTF8FailsFast(t *testing.T) {
	// A bad byte in the first fragment fails at once: the rest of the
	// message (never sent here) is not waited for.
	tests := []struct {
		name string
		in   []byte
	}{
		{"first fragment", cframe(false, 0, ws.OpText, "valid, then \xc0\xaf")},
		{"start of a long frame", cat(cheader(true, ws.OpText, 1<<20), maskBytes([]byte("\xed\xa0\x80"), 0))},
		{"second fragment", cat(cframe(false, 0, ws.OpText, "ok\xe2"), cframe(false, 0, ws.OpContinuation, "\x28"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &strictReader{t: t, chunks: [][]byte{tc.in}, what: "the rest of a message already known to be bad"}
			r := NewReader(bufio.NewReader(src))
			_, err := readMessages(r, 1024)
			require.Truef(t, err == ErrInvalidUTF8, "err = %v", err)
			assert.Equal(t, CloseInvalidPayload, err.(*Error).Code)
		})
	}
}

// maskBytes masks p as payload bytes starting at offset pos of a frame
// masked with testMask.
func maskBytes(p []byte, pos int) []byte {
	out := append([]byte(nil), p...)
	ws.Cipher(out, testMask, pos)
	return out
}

func TestReaderControlInterleaved(t *testing.T) {
	in := cat(
		cframeMask([4]byte{1, 2, 3, 4}, true, ws.OpPing, "before"),
		cframeMask([4]byte{5, 6, 7, 8}, false, ws.OpText, "Hel"),
		cframeMask([4]byte{9, 10, 11, 12}, true, ws.OpPing, "p1"),
		cframeMask([4]byte{0xFF, 0, 0xFF, 0}, false, ws.OpContinuation, "lo, "),
		cframeMask([4]byte{0x80, 0x80, 0x80, 0x80}, true, ws.OpPong, "p2"),
		cframeMask([4]byte{0, 0, 0, 0}, true, ws.OpPing, ""),
		cframeMask([4]byte{0x55, 0xAA, 0x55, 0xAA}, true, ws.OpContinuation, "w\u00f6rld"),
		cframeMask([4]byte{1, 1, 1, 1}, true, ws.OpPong, strings.Repeat("\xff", 125)),
		cframeMask([4]byte{7, 7, 7, 7}, true, ws.OpBinary, "next"),
		cframeMask([4]byte{3, 1, 4, 1}, true, ws.OpClose, "\x03\xe9gone"),
	)
	want := []ctl{
		{ws.OpPing, "before"},
		{ws.OpPing, "p1"},
		{ws.OpPong, "p2"},
		{ws.OpPing, ""},
		{ws.OpPong, strings.Repeat("\xff", 125)},
		{ws.OpClose, "\x03\xe9gone"},
	}
	for _, feed := range feeds {
		for _, bufSize := range []int{1, 2, 100} {
			t.Run(fmt.Sprintf("%s/buf%d", feed.name, bufSize), func(t *testing.T) {
				var got []ctl
				var msgsAtCtl []int
				var msgs []msg
				r := NewReader(bufio.NewReader(feed.wrap(bytes.NewReader(in))))
				r.OnControl = ControlFunc(func(op ws.OpCode, p []byte) error {
					require.LessOrEqual(t, len(p), MaxControlPayload)
					got = append(got, ctl{op, string(p)})
					msgsAtCtl = append(msgsAtCtl, len(msgs))
					return nil
				})
				msgs, err := readMessages(r, bufSize)
				require.Equal(t, io.EOF, err)
				assert.Equal(t, []msg{{ws.OpText, "Hello, w\u00f6rld"}, {ws.OpBinary, "next"}}, msgs)
				assert.Equal(t, want, got)
			})
		}
	}
}

func TestReaderControlOrderAgainstData(t *testing.T) {
	// Controls inside a message reach OnControl while that message is
	// being read, in wire order with the data.
	in := cat(
		cframe(false, 0, ws.OpBinary, "a"),
		cframe(true, 0, ws.OpPing, "1"),
		cframe(false, 0, ws.OpContinuation, "b"),
		cframe(true, 0, ws.OpPing, "2"),
		cframe(true, 0, ws.OpContinuation, "c"),
	)
	var events []string
	r := NewReader(bufio.NewReader(bytes.NewReader(in)))
	r.OnControl = ControlFunc(func(op ws.OpCode, p []byte) error {
		events = append(events, "ping "+string(p))
		return nil
	})
	_, err := r.NextMessage()
	require.NoError(t, err)
	buf := make([]byte, 10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			events = append(events, "data "+string(buf[:n]))
		}
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"data a", "ping 1", "data b", "ping 2", "data c"}, events)
}

func TestReaderOnControlErrorIsSticky(t *testing.T) {
	stop := errors.New("peer closed")
	in := cat(
		cframe(false, 0, ws.OpText, "par"),
		cframe(true, 0, ws.OpClose, "\x03\xe8"),
		cframe(true, 0, ws.OpContinuation, "tial"),
		cframe(true, 0, ws.OpText, "after"),
	)
	var calls int
	r := NewReader(bufio.NewReader(bytes.NewReader(in)))
	r.OnControl = ControlFunc(func(op ws.OpCode, p []byte) error {
		calls++
		if op == ws.OpClose {
			return stop
		}
		return nil
	})
	got, err := readMessages(r, 64)
	require.Same(t, stop, err)
	assert.Empty(t, got)
	assert.Same(t, stop, r.Err())
	for range 3 {
		_, err = r.NextMessage()
		assert.Same(t, stop, err)
		_, err = r.Advance()
		assert.Same(t, stop, err)
		n, err := r.Read(make([]byte, 8))
		assert.Zero(t, n)
		assert.Same(t, stop, err)
	}
	assert.Equal(t, 1, calls)
	assert.False(t, r.Buffered())

	// The error is returned by Advance too, when the control frame is
	// read between messages.
	r = NewReader(bufio.NewReader(bytes.NewReader(cat(cframe(true, 0, ws.OpPing, "x"), cframe(true, 0, ws.OpText, "y")))))
	r.OnControl = ControlFunc(func(ws.OpCode, []byte) error { return stop })
	started, err := r.Advance()
	assert.False(t, started)
	assert.Same(t, stop, err)
	_, err = r.NextMessage()
	assert.Same(t, stop, err)
}

func TestReaderNilOnControl(t *testing.T) {
	in := cat(cframe(true, 0, ws.OpPing, "x"), cframe(false, 0, ws.OpText, "a"), cframe(true, 0, ws.OpClose, "\x03\xe8"), cframe(true, 0, ws.OpContinuation, "b"))
	r := NewReader(bufio.NewReader(bytes.NewReader(in)))
	got, err := readMessages(r, 16)
	require.Equal(t, io.EOF, err)
	assert.Equal(t, []msg{{ws.OpText, "ab"}}, got)
	// A bad close payload is still a violation without a callback.
	r = NewReader(bufio.NewReader(bytes.NewReader(cframe(true, 0, ws.OpClose, "\x03"))))
	_, err = r.NextMessage()
	assert.Same(t, ErrCloseOneByte, err)
}

func TestReaderNextMessageDiscards(t *testing.T) {
	in := cat(
		cframe(false, 0, ws.OpText, "first "),
		cframe(true, 0, ws.OpPing, "in the skipped part"),
		cframe(false, 0, ws.OpContinuation, "message "),
		cframe(true, 0, ws.OpContinuation, "skipped"),
		cframe(true, 0, ws.OpBinary, strings.Repeat("x", 2000)),
		cframe(true, 0, ws.OpText, "third"),
	)
	for _, feed := range feeds {
		t.Run(feed.name, func(t *testing.T) {
			var pings []string
			r := NewReader(bufio.NewReader(feed.wrap(bytes.NewReader(in))))
			r.OnControl = ControlFunc(func(op ws.OpCode, p []byte) error {
				pings = append(pings, string(p))
				return nil
			})
			op, err := r.NextMessage()
			require.NoError(t, err)
			require.Equal(t, ws.OpText, op)
			buf := make([]byte, 3)
			n, err := r.Read(buf)
			require.NoError(t, err)
			require.Positive(t, n)
			require.True(t, strings.HasPrefix("fir", string(buf[:n])))

			// The rest of the first message is skipped, pings included.
			op, err = r.NextMessage()
			require.NoError(t, err)
			require.Equal(t, ws.OpBinary, op)
			assert.Equal(t, []string{"in the skipped part"}, pings)

			// The second is skipped without a Read at all.
			op, err = r.NextMessage()
			require.NoError(t, err)
			require.Equal(t, ws.OpText, op)
			data, err := io.ReadAll(r)
			require.NoError(t, err)
			assert.Equal(t, "third", string(data))

			_, err = r.NextMessage()
			assert.Equal(t, io.EOF, err)
		})
	}
}

func TestReaderNextMessageDiscardFindsViolation(t *testing.T) {
	// Skipping a message still checks it.
	in := cat(cframe(false, 0, ws.OpText, "a"), cframe(true, 0, ws.OpContinuation, "\xff"), cframe(true, 0, ws.OpText, "b"))
	r := NewReader(bufio.NewReader(bytes.NewReader(in)))
	_, err := r.NextMessage()
	require.NoError(t, err)
	_, err = r.NextMessage()
	assert.Same(t, ErrInvalidUTF8, err)
}

func TestReaderRead(t *testing.T) {
	in := cat(
		cframe(true, 0, ws.OpText, "hello world"),
		cframe(true, 0, ws.OpBinary, ""),
		cframe(false, 0, ws.OpText, ""),
		cframe(false, 0, ws.OpContinuation, "ab"),
		cframe(true, 0, ws.OpContinuation, ""),
	)
	r := NewReader(bufio.NewReader(bytes.NewReader(in)))

	// Before any message, Read is at the end of nothing.
	n, err := r.Read(make([]byte, 4))
	assert.Zero(t, n)
	assert.Equal(t, io.EOF, err)
	assert.False(t, r.Open())

	op, err := r.NextMessage()
	require.NoError(t, err)
	require.Equal(t, ws.OpText, op)
	assert.Equal(t, ws.OpText, r.Opcode())
	assert.True(t, r.Open())
	assert.False(t, r.Compressed())
	assert.Equal(t, int64(11), r.Left())

	n, err = r.Read(nil)
	assert.Zero(t, n)
	assert.NoError(t, err, "an empty Read mid-message is not the end")

	buf := make([]byte, 5)
	var steps []string
	for {
		n, err := r.Read(buf)
		steps = append(steps, fmt.Sprintf("%q %v", buf[:n], err))
		if err != nil {
			break
		}
	}
	// The last bytes come with io.EOF, in the same call.
	assert.Equal(t, []string{`"hello" <nil>`, `" worl" <nil>`, `"d" EOF`}, steps)
	assert.False(t, r.Open())
	assert.Zero(t, r.Left())
	n, err = r.Read(buf)
	assert.Zero(t, n)
	assert.Equal(t, io.EOF, err, "io.EOF again after the end")

	// An empty message.
	op, err = r.NextMessage()
	require.NoError(t, err)
	require.Equal(t, ws.OpBinary, op)
	n, err = r.Read(buf)
	assert.Zero(t, n)
	assert.Equal(t, io.EOF, err)

	// Empty fragments around the data.
	op, err = r.NextMessage()
	require.NoError(t, err)
	require.Equal(t, ws.OpText, op)
	n, err = r.Read(buf)
	assert.Equal(t, "ab", string(buf[:n]))
	if err == nil {
		n, err = r.Read(buf)
		assert.Zero(t, n)
	}
	assert.Equal(t, io.EOF, err)
	_, err = r.NextMessage()
	assert.Equal(t, io.EOF, err)
}

func TestReaderWholeMessageInOneRead(t *testing.T) {
	r := NewReader(bufio.NewReader(bytes.NewReader(cframe(true, 0, ws.OpBinary, "payload"))))
	_, err := r.NextMessage()
	require.NoError(t, err)
	buf := make([]byte, 100)
	n, err := r.Read(buf)
	assert.Equal(t, "payload", string(buf[:n]))
	assert.Equal(t, io.EOF, err)
}

func TestReaderUnmasksAcrossReads(t *testing.T) {
	// The mask position carries over between Reads of odd sizes and across
	// fragments, each with its own mask.
	payload := make([]byte, 1000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	in := cat(
		cframeMask([4]byte{0x11, 0x22, 0x33, 0x44}, false, ws.OpBinary, string(payload[:333])),
		cframeMask([4]byte{0x99, 0x88, 0x77, 0x66}, true, ws.OpContinuation, string(payload[333:])),
	)
	for _, size := range []int{1, 3, 5, 64, 4096} {
		r := NewReader(bufio.NewReaderSize(bytes.NewReader(in), 16))
		got, err := readMessages(r, size)
		require.Equal(t, io.EOF, err)
		require.Len(t, got, 1)
		require.Equal(t, string(payload), got[0].Data, "read size %d", size)
	}
}

func TestReaderAdvance(t *testing.T) {
	in := cat(cframe(true, 0, ws.OpPing, "p"), cframe(true, RSV1, ws.OpText, "compressed"))
	r := NewReader(bufio.NewReader(bytes.NewReader(in)))
	r.RSV = RSV1
	started, err := r.Advance()
	require.NoError(t, err)
	assert.False(t, started, "a control frame starts nothing")
	assert.False(t, r.Open())
	started, err = r.Advance()
	require.NoError(t, err)
	assert.True(t, started)
	assert.True(t, r.Open())
	assert.True(t, r.Compressed())
	assert.Equal(t, ws.OpText, r.Opcode())
	assert.Equal(t, int64(10), r.Left())
	data, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "compressed", string(data))
	_, err = r.Advance()
	assert.Equal(t, io.EOF, err)
}

func TestReaderReset(t *testing.T) {
	onControl := func(ws.OpCode, []byte) error { return nil }
	r := NewReader(bufio.NewReader(bytes.NewReader(sframe(true, 0, ws.OpText, "x"))))
	r.Limit, r.RSV, r.OnControl = 10, RSV1, ControlFunc(onControl)
	_, err := r.NextMessage()
	require.Same(t, ErrUnmasked, err)

	r.Reset(bufio.NewReader(bytes.NewReader(cframe(true, RSV1, ws.OpText, "\xff"))))
	assert.NoError(t, r.Err(), "Reset clears the error")
	assert.Equal(t, int64(10), r.Limit)
	assert.Equal(t, RSV1, r.RSV)
	assert.NotNil(t, r.OnControl)
	got, err := readMessages(r, 8)
	assert.Equal(t, io.EOF, err)
	assert.Equal(t, []msg{{ws.OpText, "\xff"}}, got)

	// Reset in the middle of a message forgets it, UTF-8 state included.
	r.RSV = 0
	r.Reset(bufio.NewReader(bytes.NewReader(cframe(false, 0, ws.OpText, "\xe2"))))
	_, err = r.NextMessage()
	require.NoError(t, err)
	r.Reset(bufio.NewReader(bytes.NewReader(cat(cframe(true, 0, ws.OpText, "ok"), cframe(true, 0, ws.OpContinuation, "x")))))
	assert.False(t, r.Open())
	got, err = readMessages(r, 8)
	assert.Same(t, ErrUnexpectedContinuation, err)
	assert.Equal(t, []msg{{ws.OpText, "ok"}}, got)
}

// TestReaderCleanEOFBetweenFragments: a stream that ends cleanly after a
// non-final fragment has cut the message short; Read must not report the
// end of the message (io.EOF), which callers take as "message complete".
func TestReaderCleanEOFBetweenFragments(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"binary", cframe(false, 0, ws.OpBinary, "partial")},
		{"text with an open code point", cframe(false, 0, ws.OpText, "caf\xc3")},
		{"after a control frame", cat(cframe(false, 0, ws.OpBinary, "partial"), cframe(true, 0, ws.OpPing, ""))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bufio.NewReader(bytes.NewReader(tc.in)))
			_, err := r.NextMessage()
			require.NoError(t, err)
			data, err := io.ReadAll(r) // io.ReadAll hides io.EOF: nil means "whole message"
			if err == nil {
				t.Fatalf("input %x (a non-final frame, then the end of the stream): "+
					"want io.ErrUnexpectedEOF, got io.EOF after %q with Open()=%v; "+
					"Read passes on the io.EOF of readHeader between fragments, so a "+
					"truncated message reads as complete (ginws ReadMessage returns it)",
					tc.in, data, r.Open())
			}
			assert.Equal(t, io.ErrUnexpectedEOF, err)
		})
	}
}

// timeoutErr is what a net.Conn returns when a read deadline passes.
var timeoutErr error = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// scriptReader plays its steps, one per Read: bytes or an error.
type scriptReader struct {
	steps []any // []byte or error
}

func (s *scriptReader) Read(p []byte) (int, error) {
	if len(s.steps) == 0 {
		return 0, io.EOF
	}
	switch st := s.steps[0].(type) {
	case error:
		s.steps = s.steps[1:]
		return 0, st
	case []byte:
		n := copy(p, st)
		if n == len(st) {
			s.steps = s.steps[1:]
		} else {
			s.steps[0] = st[n:]
		}
		return n, nil
	}
	panic("bad step")
}

func TestReaderTimeoutLeavesReaderUsable(t *testing.T) {
	msg1 := cframe(true, 0, ws.OpText, "one")
	msg2 := cframe(true, 0, ws.OpText, "two")
	frag1 := cframe(false, 0, ws.OpBinary, "fr")
	frag2 := cframe(true, 0, ws.OpContinuation, "ag")
	ping := cframe(true, 0, ws.OpPing, "p")
	ping3 := cframe(true, 0, ws.OpPing, "abc")
	tests := []struct {
		name  string
		steps []any
		want  []msg
	}{
		{"before the first frame", []any{timeoutErr, msg1}, []msg{{ws.OpText, "one"}}},
		{"twice in a row", []any{timeoutErr, timeoutErr, msg1}, []msg{{ws.OpText, "one"}}},
		{"between messages", []any{msg1, timeoutErr, msg2}, []msg{{ws.OpText, "one"}, {ws.OpText, "two"}}},
		{"after one header byte", []any{msg1[:1], timeoutErr, msg1[1:]}, []msg{{ws.OpText, "one"}}},
		{"inside the mask", []any{msg1[:4], timeoutErr, msg1[4:]}, []msg{{ws.OpText, "one"}}},
		{"in the payload", []any{msg1[:7], timeoutErr, msg1[7:]}, []msg{{ws.OpText, "one"}}},
		{"between fragments", []any{frag1, timeoutErr, frag2}, []msg{{ws.OpBinary, "frag"}}},
		{"after a control frame", []any{ping, timeoutErr, msg1}, []msg{{ws.OpText, "one"}}},
		{"in the next fragment header", []any{frag1, frag2[:1], timeoutErr, frag2[1:]}, []msg{{ws.OpBinary, "frag"}}},
		// A control frame is taken whole or not at all: a timeout in its
		// payload (a ping whose last bytes are late, between messages or
		// inside a fragmented one) leaves its header unread.
		{"in a control payload", []any{ping3[:7], timeoutErr, ping3[7:], msg1}, []msg{{ws.OpText, "one"}}},
		{"in a control mask", []any{ping3[:3], timeoutErr, ping3[3:], msg1}, []msg{{ws.OpText, "one"}}},
		{"in a control payload between fragments", []any{frag1, ping3[:8], timeoutErr, ping3[8:], frag2}, []msg{{ws.OpBinary, "frag"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bufio.NewReader(&scriptReader{steps: tc.steps}))
			var got []msg
			var data []byte
			timeouts := 0
			buf := make([]byte, 2)
			for {
				var err error
				if !r.Open() {
					_, err = r.NextMessage()
				} else {
					var n int
					n, err = r.Read(buf)
					data = append(data, buf[:n]...)
					if err == io.EOF {
						got = append(got, msg{r.Opcode(), string(data)})
						data = nil
						continue
					}
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					require.Truef(t, errors.Is(err, os.ErrDeadlineExceeded), "err = %v", err)
					require.NoError(t, r.Err(), "a timeout must not stop the Reader")
					timeouts++
					require.Less(t, timeouts, 5)
				}
			}
			assert.Equal(t, tc.want, got)
			assert.Positive(t, timeouts)
		})
	}
}

func TestReaderBuffered(t *testing.T) {
	text := cframe(true, 0, ws.OpText, "hello")
	bin := cframe(true, 0, ws.OpBinary, "b")
	ping := cframe(true, 0, ws.OpPing, "p")
	cont := cframe(true, 0, ws.OpContinuation, "c")
	big := cheader(true, ws.OpBinary, 70000)

	// newAfterFirst reads the first message of chunks[0] and returns the
	// Reader, with whatever follows in chunks[0] left in its buffer.
	newAfterFirst := func(t *testing.T, chunks ...[]byte) *Reader {
		src := &strictReader{t: t, chunks: chunks, what: "Buffered must not read"}
		r := NewReader(bufio.NewReader(src))
		require.False(t, r.Buffered(), "nothing is buffered before the first read")
		_, err := r.NextMessage()
		require.NoError(t, err)
		assert.False(t, r.Buffered(), "a message is open")
		_, err = io.ReadAll(r)
		require.NoError(t, err)
		return r
	}
	tests := []struct {
		name string
		rest []byte // buffered after the first message
		want bool
	}{
		{"nothing", nil, false},
		{"one header byte", text[:1], false},
		{"header without its mask", text[:5], false},
		{"whole header, no payload", text[:6], false},
		{"header and one payload byte", text[:7], true},
		{"header and part of the payload", text[:8], true},
		{"whole text frame", text, true},
		{"binary frame", bin, true},
		{"64-bit length header, no payload", big, false},
		{"64-bit length header and a payload byte", cat(big, []byte{1}), true},
		{"64-bit length header cut", big[:9], false},
		{"empty final frame", cframe(true, 0, ws.OpBinary, ""), true},
		{"empty first fragment", cframe(false, 0, ws.OpBinary, ""), false},
		{"compressed frame", cframe(true, RSV1, ws.OpBinary, "zz"), false},
		{"control frame first", cat(ping, text), false},
		{"continuation", cont, false},
		{"length with MSB", []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newAfterFirst(t, cat(text, tc.rest))
			assert.Equal(t, tc.want, r.Buffered())
			assert.Equal(t, tc.want, r.Buffered(), "Buffered changes nothing")
		})
	}

	// Readable: the message begun by Advance (as the pump does) can be
	// read on without waiting.
	readable := []struct {
		name string
		rest []byte
		want bool
	}{
		{"header only", text[:6], false},
		{"a payload byte", text[:7], true},
		{"empty final frame", cframe(true, 0, ws.OpBinary, ""), true},
		{"empty first fragment", cframe(false, 0, ws.OpBinary, ""), false},
		{"compressed", cframe(true, RSV1, ws.OpBinary, "zz"), false},
	}
	for _, tc := range readable {
		t.Run("Readable/"+tc.name, func(t *testing.T) {
			r := newAfterFirst(t, cat(text, tc.rest))
			r.RSV = RSV1 // permessage-deflate agreed
			assert.False(t, r.Readable(), "no message is open")
			started, err := r.Advance()
			require.NoError(t, err)
			require.True(t, started)
			assert.Equal(t, tc.want, r.Readable())
		})
	}

	// A violation stops Buffered.
	r := newAfterFirst(t, cat(text, sframe(true, 0, ws.OpText, "x"), text))
	require.True(t, r.Buffered(), "the header is complete; its rules are checked by NextMessage")
	_, err := r.NextMessage()
	require.Same(t, ErrUnmasked, err)
	assert.False(t, r.Buffered())
}

func TestReaderUTF8StateResetPerMessage(t *testing.T) {
	// A binary message ending in a partial sequence leaves nothing behind
	// for the next text message, and a text message's state does not leak.
	in := cat(cframe(true, 0, ws.OpBinary, "\xe2\x82"), cframe(true, 0, ws.OpText, "\xacx"))
	r := NewReader(bufio.NewReader(bytes.NewReader(in)))
	got, err := readMessages(r, 16)
	assert.Same(t, ErrInvalidUTF8, err)
	assert.Equal(t, []msg{{ws.OpBinary, "\xe2\x82"}}, got)
}

// eofCounter returns io.EOF for every Read after its data, counting the
// calls, and breaks a loop that would spin forever on io.EOF by returning
// errSpin after maxEOF of them.
type eofCounter struct {
	data   []byte
	eofs   int
	maxEOF int
}

var errSpin = errors.New("eofCounter: io.EOF returned too many times")

func (e *eofCounter) Read(p []byte) (int, error) {
	if len(e.data) > 0 {
		n := copy(p, e.data)
		e.data = e.data[n:]
		return n, nil
	}
	e.eofs++
	if e.eofs > e.maxEOF {
		return 0, errSpin
	}
	return 0, io.EOF
}

// TestReaderNextMessageAfterCleanEOFInMessage: after the stream ends
// cleanly inside a fragmented message, the next NextMessage must end
// too, not loop on io.EOF.
func TestReaderNextMessageAfterCleanEOFInMessage(t *testing.T) {
	for _, readFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("read-first=%v", readFirst), func(t *testing.T) {
			src := &eofCounter{data: cframe(false, 0, ws.OpBinary, "partial"), maxEOF: 10000}
			r := NewReader(bufio.NewReader(src))
			_, err := r.NextMessage()
			require.NoError(t, err)
			if readFirst {
				_, _ = io.ReadAll(r) // what ginws ReadMessage does
			}
			_, err = r.NextMessage()
			if err == errSpin {
				t.Fatalf("input %x (a non-final frame, then the end of the stream), NextMessage "+
					"(read-first=%v): discard loops while r.open, and Read keeps returning io.EOF "+
					"without closing the message, so NextMessage spins forever (stopped here after "+
					"%d io.EOF reads); want io.ErrUnexpectedEOF at once. A peer that sends a "+
					"non-final fragment and a FIN makes ginws's next read call spin a CPU",
					cframe(false, 0, ws.OpBinary, "partial"), readFirst, src.eofs-1)
			}
			assert.Equal(t, io.ErrUnexpectedEOF, err)
			assert.Less(t, src.eofs, 10)
		})
	}
}

// TestReaderControlRulesCheckedBeforePayload: a control frame whose header
// breaks a rule (masking, reserved bits, fragmentation) fails as soon as
// the header is in, like a data frame's; the Reader does not first wait
// for the payload, which a peer that stops there never sends.
func TestReaderControlRulesCheckedBeforePayload(t *testing.T) {
	unmaskedPing := AppendHeader(nil, true, 0, ws.OpPing, 5, nil)
	tests := []struct {
		name   string
		client bool
		in     []byte // all the peer has sent: the payload never comes
		err    error
	}{
		{"unmasked ping", false, unmaskedPing, ErrUnmasked},
		{"masked pong to a client", true, cheader(true, ws.OpPong, 125), ErrMasked},
		{"fragmented ping", false, cheader(false, ws.OpPing, 10), ErrControlFragmented},
		{"RSV1 on close", false, AppendHeader(nil, true, RSV1, ws.OpClose, 2, &testMask), ErrReservedBits},
		{"reserved control opcode", false, cheader(true, 0xB, 3), ErrReservedOpcode},
		{"unmasked ping inside a message", false, cat(cframe(false, 0, ws.OpText, "a"), unmaskedPing), ErrUnmasked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &strictReader{t: t, chunks: [][]byte{tc.in}, what: "the payload of a control frame whose header is invalid"}
			r := NewReader(bufio.NewReader(src))
			r.Client = tc.client
			_, err := readMessages(r, 3)
			require.Truef(t, err == tc.err, "err = %v, want %v", err, tc.err)
		})
	}
}
