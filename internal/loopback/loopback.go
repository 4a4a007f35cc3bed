// Package loopback gives tests both ends of a real TCP connection on
// 127.0.0.1. Only tests import it.
package loopback

import (
	"net"
	"testing"
)

// TCPPair returns both ends of a loopback TCP connection; both are closed
// when the test ends.
func TCPPair(t testing.TB) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The kernel completes the handshake from the listen backlog, so the
	// dial returns before the accept.
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		_ = client.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = server.Close()
		_ = client.Close()
	})
	return server, client
}

// SmallSendBuffers wraps ln so that every socket it accepts has a send
// buffer of size bytes: what a peer that stops reading does not take then
// waits in the server after kilobytes, not megabytes.
func SmallSendBuffers(ln net.Listener, size int) net.Listener {
	return smallSendBuffers{ln, size}
}

type smallSendBuffers struct {
	net.Listener
	size int
}

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(l.size)
	}
	return c, err
}
