//go:build unix

package rbuf

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ginws/ginws/internal/loopback"
)

// waitInSocket waits until the socket s holds at least n unread bytes.
func waitInSocket(t *testing.T, s net.Conn, n int) {
	t.Helper()
	raw, err := s.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	peek := make([]byte, n)
	require.Eventually(t, func() bool {
		var got int
		err := raw.Control(func(fd uintptr) {
			got, _, _ = syscall.Recvfrom(int(fd), peek, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		})
		return err == nil && got >= n
	}, 5*time.Second, time.Millisecond)
}

func TestDrained(t *testing.T) {
	s, c := loopback.TCPPair(t)
	b := New(s, nil)
	assert.False(t, b.Drained(), "nothing read yet")
	assert.ErrorIs(t, b.TryFill(), ErrWouldBlock)
	assert.True(t, b.Drained(), "EAGAIN: the socket is empty")
	b.Undrain()
	assert.False(t, b.Drained())

	// A read shorter than the buffer emptied the socket; it counts as
	// drained once the bytes are consumed too.
	_, err := c.Write([]byte{1, 2})
	require.NoError(t, err)
	waitInSocket(t, s, 2)
	require.NoError(t, b.TryFill())
	assert.False(t, b.Drained(), "bytes buffered")
	_, err = io.ReadFull(b, make([]byte, 2))
	require.NoError(t, err)
	assert.True(t, b.Drained())

	// A read that filled the buffer may have left bytes in the socket.
	_, err = c.Write(bytes.Repeat([]byte{7}, Size+100))
	require.NoError(t, err)
	waitInSocket(t, s, Size+100)
	_, err = io.ReadFull(b, make([]byte, Size))
	require.NoError(t, err)
	assert.False(t, b.Drained(), "a full read proves nothing")
	_, err = io.ReadFull(b, make([]byte, 100))
	require.NoError(t, err)
	assert.True(t, b.Drained(), "the rest came in a short read")

	// A read straight into the caller's slice counts the same way.
	_, err = c.Write(bytes.Repeat([]byte{8}, 2*Size))
	require.NoError(t, err)
	waitInSocket(t, s, 2*Size)
	_, err = io.ReadFull(b, make([]byte, 2*Size))
	require.NoError(t, err)
	assert.False(t, b.Drained())
	_, err = c.Write([]byte{9})
	require.NoError(t, err)
	waitInSocket(t, s, 1)
	n, err := b.Read(make([]byte, 2*Size))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.True(t, b.Drained())
}

func TestNeverDrainedWithoutRawConn(t *testing.T) {
	s, c := pipePair(t)
	b := New(s, nil)
	done := send(c, []byte{1})
	_, err := io.ReadFull(b, make([]byte, 1))
	require.NoError(t, err)
	require.NoError(t, <-done)
	assert.False(t, b.Drained())
}
