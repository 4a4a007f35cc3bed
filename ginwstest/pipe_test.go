package ginwstest

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testPipe(size int) (*pipeConn, *pipeConn) {
	a, _ := tcpAddr("192.0.2.1:1")
	b, _ := tcpAddr("192.0.2.2:2")
	return newPipe(size, a, b)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}

// The in-memory connection behaves like a TCP socket where ginws relies on
// it: buffered writes, deadlines that interrupt blocked calls, half-close.
func TestPipe(t *testing.T) {
	t.Run("writes are buffered", func(t *testing.T) {
		c, s := testPipe(8)
		defer c.Close()
		defer s.Close()
		n, err := c.Write([]byte("12345678"))
		require.NoError(t, err)
		assert.Equal(t, 8, n)
		// Full: a write blocks until its deadline.
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(20*time.Millisecond)))
		n, err = c.Write([]byte("9"))
		assert.Equal(t, 0, n)
		assert.True(t, isTimeout(err), "%v", err)
		require.NoError(t, c.SetWriteDeadline(time.Time{}))
		// Room made by a read lets a blocked write finish.
		done := make(chan error, 1)
		go func() { _, err := c.Write([]byte("9abc")); done <- err }()
		got, err := io.ReadAll(io.LimitReader(s, 12))
		require.NoError(t, err)
		assert.Equal(t, "123456789abc", string(got))
		require.NoError(t, <-done)
		n, err = c.Write(nil)
		assert.Equal(t, 0, n)
		assert.NoError(t, err)
	})

	t.Run("a deadline interrupts a blocked read", func(t *testing.T) {
		c, s := testPipe(8)
		defer c.Close()
		defer s.Close()
		done := make(chan error, 1)
		go func() { _, err := s.Read(make([]byte, 1)); done <- err }()
		time.Sleep(10 * time.Millisecond)
		require.NoError(t, s.SetReadDeadline(time.Unix(1, 0)))
		assert.True(t, isTimeout(<-done))
		// A passed deadline fails a read even with bytes waiting, as on a
		// socket; a new deadline makes the connection usable again.
		_, _ = c.Write([]byte("x"))
		_, err := s.Read(make([]byte, 1))
		assert.True(t, isTimeout(err))
		require.NoError(t, s.SetReadDeadline(time.Now().Add(time.Minute)))
		b := make([]byte, 4)
		n, err := s.Read(b)
		require.NoError(t, err)
		assert.Equal(t, "x", string(b[:n]))
		n, err = s.Read(nil)
		assert.Equal(t, 0, n)
		assert.NoError(t, err)
	})

	t.Run("a deadline moved later does not fire early", func(t *testing.T) {
		c, s := testPipe(8)
		defer c.Close()
		defer s.Close()
		require.NoError(t, s.SetReadDeadline(time.Now().Add(10*time.Millisecond)))
		require.NoError(t, s.SetReadDeadline(time.Now().Add(time.Minute)))
		go func() {
			time.Sleep(50 * time.Millisecond)
			_, _ = c.Write([]byte("late"))
		}()
		b := make([]byte, 4)
		n, err := s.Read(b)
		require.NoError(t, err)
		assert.Equal(t, "late", string(b[:n]))
	})

	t.Run("CloseWrite and Close", func(t *testing.T) {
		c, s := testPipe(64)
		_, _ = s.Write([]byte("bye"))
		require.NoError(t, s.CloseWrite())
		_, err := s.Write([]byte("more"))
		assert.ErrorIs(t, err, net.ErrClosed)
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		assert.Equal(t, "bye", string(got))

		// The other direction still works after a half-close.
		_, err = c.Write([]byte("ok"))
		require.NoError(t, err)
		b := make([]byte, 2)
		_, err = io.ReadFull(s, b)
		require.NoError(t, err)

		require.NoError(t, s.Close())
		assert.Error(t, s.Close())
		_, err = c.Write([]byte("to nobody"))
		assert.ErrorIs(t, err, io.ErrClosedPipe)
		_, err = s.Read(b)
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.Error(t, s.SetDeadline(time.Now()))
		require.NoError(t, c.Close())
	})

	t.Run("Close wakes blocked calls", func(t *testing.T) {
		c, s := testPipe(1)
		reads, writes := make(chan error, 1), make(chan error, 1)
		go func() { _, err := s.Read(make([]byte, 1)); reads <- err }()
		go func() { _, err := s.Write([]byte("too long")); writes <- err }()
		time.Sleep(10 * time.Millisecond)
		require.NoError(t, s.Close())
		assert.ErrorIs(t, <-reads, net.ErrClosed)
		assert.ErrorIs(t, <-writes, net.ErrClosed)
		require.NoError(t, c.Close())
	})
}
