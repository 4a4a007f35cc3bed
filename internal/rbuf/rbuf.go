// Package rbuf is a connection's read buffer that holds memory only while
// it holds bytes.
//
// A bufio.Reader keeps its buffer for the life of the connection, and an
// idle connection spends most of its life blocked in a read into it. A
// Reader borrows a buffer from internal/pool when bytes arrive and gives
// it back as soon as they have all been consumed. On a TCP or Unix socket
// it waits for bytes without a buffer at all: it reads through
// syscall.RawConn, and when the socket has nothing (EAGAIN) it returns the
// buffer before parking in the runtime's poller. Other connections (TLS,
// in-memory pipes) are read with their own Read, which needs a buffer to
// block in; the buffer is still returned between messages' bytes.
package rbuf

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/ginws/ginws/internal/pool"
)

// Size is the buffer a Reader borrows. Reads of at least Size bytes with
// nothing buffered go straight into the caller's slice.
const Size = 4096

// ErrWouldBlock is TryFill's answer when the socket has nothing to read.
var ErrWouldBlock = errors.New("rbuf: no bytes ready")

// ErrBufferFull is returned by Peek for more than Size bytes.
var ErrBufferFull = errors.New("rbuf: peek larger than the buffer")

// Reader is a buffered reader of a connection (see the package comment).
// Its methods are those of bufio.Reader that a frame reader needs. It is
// not safe for concurrent use.
type Reader struct {
	nc  net.Conn
	raw syscall.RawConn // nil: read through nc.Read

	buf  *[]byte // borrowed while r < w, nil otherwise
	r, w int

	// The raw read in progress: where to (nil: into buf), and its result.
	onReadable func(fd uintptr) bool
	noWait     bool // TryFill's read: ErrWouldBlock instead of waiting
	drained    bool // the last raw read left the socket empty (see Drained)
	dst        []byte
	n          int
	errno      error
}

// New reads nc, starting with early: bytes already read from it (for
// instance by the HTTP server's own buffered reader), which are copied.
func New(nc net.Conn, early []byte) *Reader {
	b := &Reader{nc: nc, raw: rawConn(nc)}
	if b.raw != nil {
		b.onReadable = b.readable
	}
	if len(early) > 0 {
		b.buf = borrow(len(early))
		b.w = copy(*b.buf, early)
	}
	return b
}

// RawConn is the socket the Reader reads through RawConn, or nil when it
// reads through the connection's own Read.
func (b *Reader) RawConn() syscall.RawConn { return b.raw }

// Buffered is the number of bytes that can be read without a read call.
func (b *Reader) Buffered() int { return b.w - b.r }

// Holding reports whether the Reader holds a buffer.
func (b *Reader) Holding() bool { return b.buf != nil }

// Peek returns the next n bytes without consuming them, reading until
// they are there. With fewer, it returns those and the error that stopped
// it. The slice is valid until the next call.
func (b *Reader) Peek(n int) ([]byte, error) {
	if n > Size {
		return nil, ErrBufferFull
	}
	for b.w-b.r < n {
		if err := b.fill(); err != nil {
			if b.buf == nil {
				return nil, err
			}
			return (*b.buf)[b.r:b.w], err
		}
	}
	return (*b.buf)[b.r : b.r+n], nil
}

// Discard skips the next n bytes, reading as needed, and returns how many
// it skipped.
func (b *Reader) Discard(n int) (int, error) {
	done := 0
	for done < n {
		if b.r == b.w {
			if err := b.fill(); err != nil {
				return done, err
			}
		}
		k := min(n-done, b.w-b.r)
		b.r += k
		done += k
		b.consumed()
	}
	return done, nil
}

// Read reads into p: from the buffer when it holds bytes, otherwise with
// one read call (into p directly when p is at least Size long).
func (b *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.r == b.w {
		if len(p) >= Size {
			return b.read(p)
		}
		if err := b.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*b.buf)[b.r:b.w])
	b.r += n
	b.consumed()
	return n, nil
}

// TryFill makes sure some bytes are buffered without waiting for them: it
// reads once when nothing is buffered, and returns ErrWouldBlock when the
// socket has nothing either. Connections not read through RawConn wait
// for bytes as Read does.
func (b *Reader) TryFill() error {
	if b.r < b.w {
		return nil
	}
	b.noWait = true
	err := b.fill()
	b.noWait = false
	return err
}

// Drained reports that nothing is buffered and the last read through
// RawConn emptied the socket: it returned fewer bytes than it asked for,
// or found none. A caller watching the socket with edge-triggered epoll
// can then wait for the next report instead of reading to find EAGAIN
// (epoll(7): a short read on a stream socket has exhausted its input).
// Connections not read through RawConn are never reported drained.
func (b *Reader) Drained() bool { return b.drained && b.r == b.w }

// Undrain forgets what the last read found, so that Drained is false
// until the next read: for when a report says more bytes have come.
func (b *Reader) Undrain() { b.drained = false }

// Release gives the buffer back, dropping what it holds. The Reader stays
// usable.
func (b *Reader) Release() {
	if b.buf != nil {
		pool.Put(b.buf)
		b.buf = nil
	}
	b.r, b.w = 0, 0
}

// borrow takes a buffer of at least n bytes from the pool, its length set
// to its capacity.
func borrow(n int) *[]byte {
	p := pool.Get(n)
	*p = (*p)[:cap(*p)]
	return p
}

func (b *Reader) consumed() {
	if b.r == b.w {
		b.Release()
	}
}

// fill reads once more into the buffer, after what it holds. It returns
// an error only when nothing was read.
func (b *Reader) fill() error {
	if b.buf != nil && b.r > 0 {
		b.w = copy(*b.buf, (*b.buf)[b.r:b.w])
		b.r = 0
	}
	for range 100 {
		n, err := b.read(nil)
		b.w += n
		if n > 0 {
			return nil
		}
		if err != nil {
			if b.r == b.w {
				b.Release()
			}
			return err
		}
	}
	return io.ErrNoProgress
}

// read reads into p, or after the buffered bytes when p is nil.
func (b *Reader) read(p []byte) (int, error) {
	if b.raw == nil {
		if p == nil {
			if b.buf == nil {
				b.buf = borrow(Size)
			}
			p = (*b.buf)[b.w:]
		}
		return b.nc.Read(p)
	}
	b.dst, b.n, b.errno = p, 0, nil
	err := b.raw.Read(b.onReadable)
	b.dst = nil
	if err != nil {
		// The poller's own errors (deadline, closed), already an *OpError.
		return 0, err
	}
	switch {
	case b.errno == ErrWouldBlock:
		return 0, ErrWouldBlock
	case b.errno != nil:
		return 0, &net.OpError{Op: "read", Net: b.nc.LocalAddr().Network(),
			Source: b.nc.LocalAddr(), Addr: b.nc.RemoteAddr(), Err: os.NewSyscallError("read", b.errno)}
	case b.n == 0:
		return 0, io.EOF
	}
	return b.n, nil
}

// testHookPark, when set by a test, sees the Reader each time it is about
// to wait for the socket.
var testHookPark func(*Reader)

// readable runs in RawConn.Read with the socket's descriptor: one
// non-blocking read. When the socket has nothing yet, the buffer goes
// back to the pool before the poller parks the goroutine, unless it still
// holds bytes.
func (b *Reader) readable(fd uintptr) bool {
	p := b.dst
	own := p == nil
	if own {
		if b.buf == nil {
			b.buf = borrow(Size)
		}
		p = (*b.buf)[b.w:]
	}
	n, err := readFD(fd, p)
	b.drained = err == syscall.EAGAIN || (err == nil && n > 0 && n < len(p))
	if err == syscall.EAGAIN {
		if own && b.r == b.w {
			b.Release()
			if b.noWait {
				b.errno = ErrWouldBlock
				return true
			}
		}
		if testHookPark != nil {
			testHookPark(b)
		}
		return false
	}
	b.n, b.errno = max(n, 0), err
	return true
}
