//go:build unix

package ginws

import (
	"os"
	"sync"
	"syscall"
)

// writeNow writes as much of f as the socket takes at once, with
// non-blocking write(2) calls through the socket's syscall.RawConn, and
// returns what is left. It never waits, so it needs no write deadline:
// a close frame or a pong nearly always fits in the socket's send buffer,
// and setting and restoring a deadline (two runtime timer changes) cost
// more than the write, and took a closing connection's stack past its
// size. It writes nothing when the deadline already passed (the caller
// then sets its own) or the connection is not a plain socket.
func (c *Conn) writeNow(f []byte) ([]byte, error) {
	f, _, err := writeNow(c.br.RawConn(), f)
	return f, err
}

// writeNow is Conn.writeNow for a socket's raw, nil when the connection is
// not a plain socket. The bool reports that the socket had no room for
// the rest of f (write(2) failed with EAGAIN).
func writeNow(raw syscall.RawConn, f []byte) ([]byte, bool, error) {
	if raw == nil {
		return f, false, nil
	}
	w := rawWriters.Get().(*rawWriter)
	w.p, w.err, w.full = f, nil, false
	err := raw.Write(w.fn)
	f, werr, full := w.p, w.err, w.full
	w.p, w.err = nil, nil
	rawWriters.Put(w)
	if werr != nil {
		return f, false, os.NewSyscallError("write", werr)
	}
	if err != nil && !isTimeout(err) {
		return f, false, err
	}
	return f, full, nil
}

// rawWriter holds one writeNow call's state, with its callback bound once
// per pooled object instead of a closure allocated per call.
type rawWriter struct {
	p    []byte
	err  error
	full bool // write(2) failed with EAGAIN
	fn   func(fd uintptr) bool
}

var rawWriters = sync.Pool{New: func() any {
	w := new(rawWriter)
	w.fn = w.write
	return w
}}

// write is the RawConn.Write callback: it returns true at once, whatever
// happened, so that package net never waits for the socket.
func (w *rawWriter) write(fd uintptr) bool {
	for len(w.p) > 0 {
		n, err := syscall.Write(int(fd), w.p)
		if n > 0 {
			w.p = w.p[n:]
		}
		switch err {
		case nil:
		case syscall.EINTR:
		case syscall.EAGAIN:
			w.full = true
			return true
		default:
			w.err = err
			return true
		}
	}
	return true
}
