package rbuf

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ginws/ginws/internal/loopback"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pipePair(t *testing.T) (server, client net.Conn) {
	s, c := net.Pipe()
	t.Cleanup(func() {
		_ = s.Close()
		_ = c.Close()
	})
	return s, c
}

// kinds runs a test over a TCP socket (read through RawConn) and over a
// pipe (read through its own Read).
func kinds(t *testing.T, f func(t *testing.T, server, client net.Conn, raw bool)) {
	t.Run("tcp", func(t *testing.T) {
		s, c := loopback.TCPPair(t)
		f(t, s, c, true)
	})
	t.Run("pipe", func(t *testing.T) {
		s, c := pipePair(t)
		f(t, s, c, false)
	})
}

// send writes p from another goroutine (a pipe's Write blocks until read),
// pausing between chunks so a socket's reads see them apart, and reports
// the result on the returned channel.
func send(c net.Conn, p ...[]byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		for i, b := range p {
			if i > 0 {
				time.Sleep(time.Millisecond)
			}
			if _, err := c.Write(b); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

func TestRawOnlyForSockets(t *testing.T) {
	s, _ := loopback.TCPPair(t)
	assert.NotNil(t, New(s, nil).raw)
	p, _ := pipePair(t)
	assert.Nil(t, New(p, nil).raw)
	assert.Nil(t, New(wrapped{s}, nil).raw, "a wrapper is read through its own Read")
}

type wrapped struct{ net.Conn }

func TestEarlyBytesFirst(t *testing.T) {
	kinds(t, func(t *testing.T, s, c net.Conn, raw bool) {
		early := []byte("early ")
		b := New(s, early)
		early[0] = 'X' // copied, not aliased
		assert.True(t, b.Holding())
		assert.Equal(t, 6, b.Buffered())
		done := send(c, []byte("then the socket"))
		got := make([]byte, 21)
		_, err := io.ReadFull(b, got)
		require.NoError(t, err)
		assert.Equal(t, "early then the socket", string(got))
		require.NoError(t, <-done)
		assert.False(t, b.Holding(), "all bytes consumed: buffer returned")
		assert.Zero(t, b.Buffered())
	})
}

func TestPeekAndDiscard(t *testing.T) {
	kinds(t, func(t *testing.T, s, c net.Conn, raw bool) {
		b := New(s, nil)
		done := send(c, []byte{1}, []byte{2, 3}, []byte{4, 5, 6, 7})
		p, err := b.Peek(3)
		require.NoError(t, err)
		assert.Equal(t, []byte{1, 2, 3}, p)
		n, err := b.Discard(2)
		require.NoError(t, err)
		assert.Equal(t, 2, n)
		p, err = b.Peek(5)
		require.NoError(t, err)
		assert.Equal(t, []byte{3, 4, 5, 6, 7}, p)
		n, err = b.Discard(5)
		require.NoError(t, err)
		assert.Equal(t, 5, n)
		assert.False(t, b.Holding())
		require.NoError(t, <-done)

		_, err = b.Peek(Size + 1)
		assert.ErrorIs(t, err, ErrBufferFull)
	})
}

func TestDiscardAcrossReads(t *testing.T) {
	kinds(t, func(t *testing.T, s, c net.Conn, raw bool) {
		b := New(s, []byte("ab"))
		payload := bytes.Repeat([]byte("x"), 3*Size)
		done := send(c, payload, []byte("tail"))
		n, err := b.Discard(2 + len(payload))
		require.NoError(t, err)
		assert.Equal(t, 2+len(payload), n)
		got := make([]byte, 4)
		_, err = io.ReadFull(b, got)
		require.NoError(t, err)
		assert.Equal(t, "tail", string(got))
		require.NoError(t, <-done)
	})
}

func TestLargeReadSkipsBuffer(t *testing.T) {
	kinds(t, func(t *testing.T, s, c net.Conn, raw bool) {
		b := New(s, nil)
		payload := bytes.Repeat([]byte("y"), Size)
		done := send(c, payload)
		p := make([]byte, Size)
		n, err := b.Read(p)
		require.NoError(t, err)
		assert.Equal(t, payload[:n], p[:n])
		assert.False(t, b.Holding(), "read straight into the caller's slice")
		_, err = io.ReadFull(b, p[n:])
		require.NoError(t, err)
		require.NoError(t, <-done)
	})
}

// The point of the package: a Reader waiting for bytes holds no buffer,
// unless it holds bytes of a frame not yet complete.
func TestWaitsWithoutBuffer(t *testing.T) {
	s, c := loopback.TCPPair(t)
	b := New(s, nil)
	var parks, holding int
	// When expire says so at a park, the wait ends there with a timeout:
	// a deadline set ahead could pass before the Reader gets to the
	// socket on a slow machine, and the read would then not park at all.
	var expire func(*Reader) bool
	testHookPark = func(r *Reader) {
		if r == b {
			parks++
			if r.Holding() {
				holding++
			}
			if expire != nil && expire(r) {
				expire = nil
				_ = s.SetReadDeadline(time.Now())
			}
		}
	}
	defer func() { testHookPark = nil }()

	done := send(c, []byte("hi"))
	p := make([]byte, 2)
	_, err := io.ReadFull(b, p)
	require.NoError(t, err)
	require.NoError(t, <-done)

	expire = func(*Reader) bool { return true }
	_, err = b.Read(p)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Positive(t, parks)
	assert.Zero(t, holding, "parked with a buffer and nothing in it")
	assert.False(t, b.Holding())

	// One byte of a two-byte header: the byte stays, so does the buffer.
	_, err = c.Write([]byte{0x82})
	require.NoError(t, err)
	parks, holding = 0, 0
	require.NoError(t, s.SetReadDeadline(time.Time{}))
	expire = (*Reader).Holding // once the byte is in
	got, err := b.Peek(2)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Equal(t, []byte{0x82}, got)
	assert.Positive(t, holding, "parked holding the byte, and so the buffer")
	assert.True(t, b.Holding())

	// The Reader goes on once the rest arrives.
	require.NoError(t, s.SetReadDeadline(time.Time{}))
	_, err = c.Write([]byte{0x00})
	require.NoError(t, err)
	got, err = b.Peek(2)
	require.NoError(t, err)
	assert.Equal(t, []byte{0x82, 0x00}, got)
}

func TestEOF(t *testing.T) {
	kinds(t, func(t *testing.T, s, c net.Conn, raw bool) {
		b := New(s, nil)
		done := make(chan error, 1)
		go func() {
			_, err := c.Write([]byte{9})
			done <- errors.Join(err, c.Close())
		}()
		defer func() { require.NoError(t, <-done) }()
		p, err := b.Peek(2)
		assert.Equal(t, []byte{9}, p)
		assert.ErrorIs(t, err, io.EOF)
		n, err := b.Read(make([]byte, 4))
		assert.Equal(t, 1, n)
		assert.NoError(t, err)
		_, err = b.Read(make([]byte, 4))
		assert.ErrorIs(t, err, io.EOF)
		_, err = b.Read(make([]byte, 2*Size))
		assert.ErrorIs(t, err, io.EOF)
		assert.False(t, b.Holding())
	})
}

func TestCloseWakesReader(t *testing.T) {
	kinds(t, func(t *testing.T, s, c net.Conn, raw bool) {
		b := New(s, nil)
		errc := make(chan error, 1)
		go func() {
			_, err := b.Read(make([]byte, 8))
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, s.Close())
		err := <-errc
		if raw {
			assert.ErrorIs(t, err, net.ErrClosed)
		} else {
			assert.ErrorIs(t, err, io.ErrClosedPipe) // the pipe's own error, passed on
		}
	})
}

func TestResetIsAnOpError(t *testing.T) {
	s, c := loopback.TCPPair(t)
	require.NoError(t, c.SetLinger(0))
	b := New(s, nil)
	// An unread byte on the closing side makes the close a reset.
	_, err := s.Write([]byte{1})
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.Close())
	_, err = b.Read(make([]byte, 8))
	var oe *net.OpError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "read", oe.Op)
	assert.ErrorIs(t, err, syscall.ECONNRESET)
	assert.Equal(t, s.RemoteAddr(), oe.Addr)
}

// Random chunks on the wire, random calls on the Reader: the bytes come
// out as they went in, whatever the mix.
func TestRandomMix(t *testing.T) {
	kinds(t, func(t *testing.T, s, c net.Conn, raw bool) {
		rng := rand.New(rand.NewPCG(1, 2))
		src := make([]byte, 1<<20)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		var chunks [][]byte
		for rest := src[64:]; len(rest) > 0; {
			n := min(len(rest), 1+rng.IntN(3*Size))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		b := New(s, src[:64])
		done := send(c, chunks...)
		var got []byte
		p := make([]byte, 2*Size)
		for len(got) < len(src) {
			left := len(src) - len(got)
			switch rng.IntN(3) {
			case 0:
				n := min(1+rng.IntN(14), left)
				q, err := b.Peek(n)
				require.NoError(t, err)
				require.Len(t, q, n)
				require.Equal(t, src[len(got):len(got)+n], q)
				k, err := b.Discard(n)
				require.NoError(t, err)
				got = append(got, src[len(got):len(got)+k]...)
			case 1:
				n := min(1+rng.IntN(2*Size), left)
				k, err := b.Read(p[:n])
				require.NoError(t, err)
				got = append(got, p[:k]...)
			case 2:
				n := min(1+rng.IntN(Size), left)
				k, err := b.Discard(n)
				require.NoError(t, err)
				got = append(got, src[len(got):len(got)+k]...)
			}
			require.Equal(t, src[:len(got)], got)
		}
		require.NoError(t, <-done)
		assert.False(t, b.Holding())
	})
}

func TestRelease(t *testing.T) {
	s, _ := pipePair(t)
	b := New(s, []byte("left over"))
	b.Release()
	assert.False(t, b.Holding())
	assert.Zero(t, b.Buffered())
	b.Release() // twice is fine
}

func TestTryFill(t *testing.T) {
	s, c := loopback.TCPPair(t)
	b := New(s, nil)
	assert.ErrorIs(t, b.TryFill(), ErrWouldBlock)
	assert.False(t, b.Holding(), "nothing to read: no buffer held")

	_, err := c.Write([]byte{1, 2})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.TryFill() == nil }, 5*time.Second, time.Millisecond)
	assert.Equal(t, 2, b.Buffered())
	// Bytes buffered: nothing to do, the socket is not read.
	_, err = c.Write([]byte{3})
	require.NoError(t, err)
	require.NoError(t, b.TryFill())
	p := make([]byte, 2)
	_, err = io.ReadFull(b, p)
	require.NoError(t, err)
	assert.Equal(t, []byte{1, 2}, p)
	// Only TryFill skips the wait: the next read waits for its byte.
	_, err = io.ReadFull(b, p[:1])
	require.NoError(t, err)
	assert.Equal(t, byte(3), p[0])
	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = c.Write([]byte{4})
	}()
	_, err = io.ReadFull(b, p[:1])
	require.NoError(t, err)
	assert.Equal(t, byte(4), p[0])

	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return errors.Is(b.TryFill(), io.EOF) }, 5*time.Second, time.Millisecond)
}
