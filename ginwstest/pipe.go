package ginwstest

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// The transport between the test's client and the handler is a pair of
// in-memory connections with a bounded buffer in each direction. Unlike
// net.Pipe, a write returns as soon as its bytes fit in the buffer, as on a
// TCP socket, so a side that writes a close frame (or a pong) does not wait
// for the other side to read it, and the two sides can write at the same
// time without waiting for each other. A full buffer blocks the writer,
// again as a socket does, so a client that stops reading is a slow peer.
//
// The pipe starts no goroutine. Deadlines are timers that only close a
// channel.

// DefaultBufferSize is how many bytes each direction of the in-memory
// connection holds before a writer blocks (see BufferSize).
const DefaultBufferSize = 256 << 10

// pipeBuf is one direction: bytes written by one end, read by the other.
type pipeBuf struct {
	mu      sync.Mutex
	data    []byte
	limit   int
	total   uint64        // bytes ever written into the buffer
	eof     bool          // the writer is done (Close or CloseWrite): EOF after data
	gone    bool          // the reader closed: writes fail
	changed chan struct{} // closed and replaced on every change
}

func newPipeBuf(limit int) *pipeBuf {
	return &pipeBuf{limit: limit, changed: make(chan struct{})}
}

// signal wakes everyone waiting on the buffer. mu must be held.
func (b *pipeBuf) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// pipeDeadline is a deadline that closes a channel when it passes.
type pipeDeadline struct {
	mu      sync.Mutex
	gen     uint64
	timer   *time.Timer
	expired chan struct{}
}

func newPipeDeadline() *pipeDeadline { return &pipeDeadline{expired: make(chan struct{})} }

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (d *pipeDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if isClosed(d.expired) {
		d.expired = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.expired)
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen && !isClosed(d.expired) {
			close(d.expired)
		}
	})
}

// wait returns the channel that is closed when the deadline passes.
func (d *pipeDeadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}

func (d *pipeDeadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

// pipeConn is one end of the in-memory connection: a net.Conn with
// deadlines and CloseWrite, like *net.TCPConn.
type pipeConn struct {
	in, out       *pipeBuf
	rdl, wdl      *pipeDeadline
	local, remote net.Addr

	closeOnce sync.Once
	closed    chan struct{}
	onClose   func() // called once by Close, if set before the end is used
}

// newPipe returns the two ends of a new in-memory connection.
func newPipe(size int, clientAddr, serverAddr net.Addr) (client, server *pipeConn) {
	c2s, s2c := newPipeBuf(size), newPipeBuf(size)
	client = &pipeConn{in: s2c, out: c2s, local: clientAddr, remote: serverAddr}
	server = &pipeConn{in: c2s, out: s2c, local: serverAddr, remote: clientAddr}
	for _, p := range []*pipeConn{client, server} {
		p.rdl, p.wdl = newPipeDeadline(), newPipeDeadline()
		p.closed = make(chan struct{})
	}
	return client, server
}

func (p *pipeConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "pipe", Source: p.local, Addr: p.remote, Err: err}
}

// Read reads what the other end wrote. As on a socket, a read whose
// deadline has passed fails even when bytes are waiting.
func (p *pipeConn) Read(b []byte) (int, error) {
	for {
		if isClosed(p.closed) {
			return 0, p.opError("read", net.ErrClosed)
		}
		expired := p.rdl.wait()
		if isClosed(expired) {
			return 0, p.opError("read", os.ErrDeadlineExceeded)
		}
		if len(b) == 0 {
			return 0, nil
		}
		buf := p.in
		buf.mu.Lock()
		if len(buf.data) > 0 {
			n := copy(b, buf.data)
			buf.data = buf.data[n:]
			if len(buf.data) == 0 {
				buf.data = nil // let a drained buffer go
			}
			buf.signal()
			buf.mu.Unlock()
			return n, nil
		}
		if buf.eof {
			buf.mu.Unlock()
			return 0, io.EOF
		}
		changed := buf.changed
		buf.mu.Unlock()
		select {
		case <-changed:
		case <-expired:
		case <-p.closed:
		}
	}
}

// Write copies b into the buffer towards the other end, waiting for room
// when it is full.
func (p *pipeConn) Write(b []byte) (int, error) {
	n := 0
	for {
		if isClosed(p.closed) {
			return n, p.opError("write", net.ErrClosed)
		}
		expired := p.wdl.wait()
		if isClosed(expired) {
			return n, p.opError("write", os.ErrDeadlineExceeded)
		}
		buf := p.out
		buf.mu.Lock()
		switch {
		case buf.eof:
			buf.mu.Unlock()
			return n, p.opError("write", net.ErrClosed) // after CloseWrite
		case buf.gone:
			buf.mu.Unlock()
			return n, p.opError("write", io.ErrClosedPipe) // the peer closed
		}
		if room := buf.limit - len(buf.data); room > 0 && n < len(b) {
			k := min(room, len(b)-n)
			buf.data = append(buf.data, b[n:n+k]...)
			buf.total += uint64(k)
			n += k
			buf.signal()
		}
		if n == len(b) {
			buf.mu.Unlock()
			return n, nil
		}
		changed := buf.changed
		buf.mu.Unlock()
		select {
		case <-changed:
		case <-expired:
		case <-p.closed:
		}
	}
}

// CloseWrite shuts the write side: the other end reads what is buffered,
// then io.EOF.
func (p *pipeConn) CloseWrite() error {
	if isClosed(p.closed) {
		return p.opError("close", net.ErrClosed)
	}
	p.out.mu.Lock()
	p.out.eof = true
	p.out.signal()
	p.out.mu.Unlock()
	return nil
}

// Close closes both directions. The other end still reads what was
// written before it, then io.EOF; its writes fail.
func (p *pipeConn) Close() error {
	err := p.opError("close", net.ErrClosed)
	p.closeOnce.Do(func() {
		err = nil
		close(p.closed)
		p.out.mu.Lock()
		p.out.eof = true
		p.out.signal()
		p.out.mu.Unlock()
		p.in.mu.Lock()
		p.in.gone = true
		p.in.data = nil
		p.in.signal()
		p.in.mu.Unlock()
		p.rdl.stop()
		p.wdl.stop()
		if p.onClose != nil {
			p.onClose()
		}
	})
	return err
}

// BytesReceived is how many bytes the other end has written to this one,
// read or not, as a TCP socket's kernel counts them (ginws's keepalive
// asks it, as it asks the kernel over TCP).
func (p *pipeConn) BytesReceived() uint64 {
	p.in.mu.Lock()
	defer p.in.mu.Unlock()
	return p.in.total
}

func (p *pipeConn) LocalAddr() net.Addr  { return p.local }
func (p *pipeConn) RemoteAddr() net.Addr { return p.remote }

func (p *pipeConn) SetDeadline(t time.Time) error {
	if err := p.SetReadDeadline(t); err != nil {
		return err
	}
	return p.SetWriteDeadline(t)
}

func (p *pipeConn) SetReadDeadline(t time.Time) error {
	if isClosed(p.closed) {
		return p.opError("set", net.ErrClosed)
	}
	p.rdl.set(t)
	return nil
}

func (p *pipeConn) SetWriteDeadline(t time.Time) error {
	if isClosed(p.closed) {
		return p.opError("set", net.ErrClosed)
	}
	p.wdl.set(t)
	return nil
}
