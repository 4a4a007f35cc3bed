package frame

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/internal/rbuf"
)

// scriptConn is a net.Conn whose reads play a scriptReader, so that an
// rbuf.Reader reads it through its Read (as it reads a TLS connection).
type scriptConn struct {
	net.Conn
	s scriptReader
}

func (c *scriptConn) Read(p []byte) (int, error) { return c.s.Read(p) }

// boundaryWire is a stream that exercises every part of the header and
// payload paths: 7-bit, 16-bit and (non-minimal) 64-bit lengths, a text
// message whose code point is split across fragments with control frames
// between them, empty frames, and a close frame.
func boundaryWire() (wire []byte, msgs []msg, ctls []ctl) {
	long := strings.Repeat("0123456789", 20)
	nonMinimal := func(op ws.OpCode, p string) []byte {
		b := []byte{0x80 | byte(op), 0x80 | 127}
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
		b = append(b, testMask[:]...)
		return append(b, maskBytes([]byte(p), 0)...)
	}
	wire = cat(
		cframe(true, 0, ws.OpText, "h\u00e9llo"),
		cframe(true, 0, ws.OpPing, "p"),
		cframe(false, 0, ws.OpText, "a\xf0\x9f"),
		cframe(true, 0, ws.OpPing, "abc"),
		cframe(false, 0, ws.OpContinuation, "\x98"),
		cframe(true, 0, ws.OpPong, ""),
		cframe(false, 0, ws.OpContinuation, ""),
		cframe(true, 0, ws.OpContinuation, "\x80!"),
		cframe(true, 0, ws.OpBinary, long),
		nonMinimal(ws.OpBinary, "xyz"),
		cframe(true, 0, ws.OpBinary, ""),
		cframe(true, 0, ws.OpClose, "\x03\xe8bye"),
	)
	msgs = []msg{
		{ws.OpText, "h\u00e9llo"},
		{ws.OpText, "a\U0001F600!"},
		{ws.OpBinary, long},
		{ws.OpBinary, "xyz"},
		{ws.OpBinary, ""},
	}
	ctls = []ctl{{ws.OpPing, "p"}, {ws.OpPing, "abc"}, {ws.OpPong, ""}, {ws.OpClose, "\x03\xe8bye"}}
	return wire, msgs, ctls
}

// readThroughTimeouts reads every message of r as ginws does, going on
// after each timeout, and fails the test on any other error.
func readThroughTimeouts(t *testing.T, r *Reader, bufSize int) (got []msg, timeouts int) {
	t.Helper()
	var data []byte
	buf := make([]byte, bufSize)
	for timeouts < 1000 {
		var err error
		var ready bool // Buffered or Readable: the call must not wait
		if !r.Open() {
			ready = r.Buffered()
			_, err = r.NextMessage()
		} else {
			var n int
			ready = r.Readable()
			n, err = r.Read(buf)
			require.False(t, n == 0 && err == nil, "Read returned 0, nil")
			data = append(data, buf[:n]...)
			if err == io.EOF {
				got = append(got, msg{r.Opcode(), string(data)})
				data = nil
				continue
			}
		}
		if err == nil {
			continue
		}
		if err == io.EOF {
			require.Empty(t, data, "stream ended inside a message")
			return got, timeouts
		}
		require.Truef(t, errors.Is(err, os.ErrDeadlineExceeded), "err = %v", err)
		require.False(t, ready, "Buffered or Readable, then a read that waited")
		require.NoError(t, r.Err(), "a timeout must not stop the Reader")
		timeouts++
	}
	t.Fatal("no progress")
	return nil, 0
}

// TestReaderTimeoutAtEveryByte: a read deadline that passes after any
// byte of the stream loses and duplicates nothing, whether the frame
// reader reads a bufio.Reader or an rbuf.Reader, and an rbuf.Reader holds
// no buffer once everything has been read.
func TestReaderTimeoutAtEveryByte(t *testing.T) {
	wire, want, wantCtls := boundaryWire()
	type source struct {
		name string
		make func(steps []any) (Source, func() bool)
	}
	sources := []source{
		{"bufio", func(steps []any) (Source, func() bool) {
			return bufio.NewReader(&scriptReader{steps: steps}), func() bool { return false }
		}},
		{"rbuf", func(steps []any) (Source, func() bool) {
			b := rbuf.New(&scriptConn{s: scriptReader{steps: steps}}, nil)
			return b, b.Holding
		}},
		// The bytes before the first timeout came with the HTTP request.
		{"rbuf-early", func(steps []any) (Source, func() bool) {
			early := steps[0].([]byte)
			b := rbuf.New(&scriptConn{s: scriptReader{steps: steps[1:]}}, early)
			return b, b.Holding
		}},
	}
	run := func(t *testing.T, src source, steps []any, bufSize int) {
		t.Helper()
		br, holding := src.make(steps)
		r := NewReader(br)
		var ctls []ctl
		r.OnControl = ControlFunc(func(op ws.OpCode, p []byte) error {
			ctls = append(ctls, ctl{op, string(p)})
			return nil
		})
		got, timeouts := readThroughTimeouts(t, r, bufSize)
		require.Positive(t, timeouts)
		require.Equal(t, want, got)
		require.Equal(t, wantCtls, ctls)
		require.False(t, holding(), "a buffer held after the stream was read")
	}
	for _, src := range sources {
		for _, bufSize := range []int{1, 3, 512} {
			t.Run(fmt.Sprintf("%s/read%d/split-at-each-byte", src.name, bufSize), func(t *testing.T) {
				for i := 0; i <= len(wire); i++ {
					run(t, src, []any{wire[:i], timeoutErr, wire[i:]}, bufSize)
				}
			})
			t.Run(fmt.Sprintf("%s/read%d/timeout-after-every-byte", src.name, bufSize), func(t *testing.T) {
				var steps []any
				for i := range wire {
					steps = append(steps, wire[i:i+1], timeoutErr)
				}
				run(t, src, steps, bufSize)
			})
		}
	}
}
