package ginwstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/ginws/ginws/ginws"
	"github.com/ginws/ginws/internal/frame"
)

// Conn is the client end of a connection made by Dial. Its methods mirror
// the message API of *ginws.Conn: one goroutine may read at a time, any
// number may write concurrently with it and with each other (each message
// goes out whole). Pings from the server are answered, and the close
// handshake completed, by whoever reads.
type Conn struct {
	nc    *pipeConn
	br    *bufio.Reader
	fr    frame.Reader
	proto string
	dz    deflateAgreed
	cfg   *dialConfig
	srv   *served

	// Read side: rmu is held by a ReadMessage or a closing CloseWith.
	rmu        sync.Mutex
	reading    atomic.Int32
	rerr       error         // sticky
	readerLeft chan struct{} // a read ended while a close waited for the server's

	// Write side: wsem is the write lock, a channel so that a waiting
	// writer can give up with its context.
	wsem     chan struct{}
	closeOut bool // a close frame went out (or was tried); guarded by wsem
	ctrlMu   sync.Mutex
	pong     []byte
	pongWait atomic.Bool

	closeSent atomic.Bool
	closedUs  atomic.Bool   // CloseWith was called: writes fail with ErrClosed
	done      chan struct{} // the client's end is closed
	ended     *endSignal    // either end is closed: Done
	doneOnce  sync.Once
	errMu     sync.Mutex
	cerr      error // why the connection ended; the first cause wins
}

func newConn(nc *pipeConn, br *bufio.Reader, proto string, dz deflateAgreed, cfg *dialConfig, srv *served, ended *endSignal) *Conn {
	c := &Conn{
		nc:    nc,
		br:    br,
		proto: proto,
		dz:    dz,
		cfg:   cfg,
		srv:   srv,
		wsem:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		ended: ended,

		readerLeft: make(chan struct{}, 1),
	}
	c.fr.Reset(br)
	c.fr.Client = true
	c.fr.Limit = cfg.readLimit
	c.fr.OnControl = frame.ControlFunc(c.onControl)
	if dz.on {
		c.fr.RSV = frame.RSV1
		c.fr.Inflate = true
		c.fr.NoContextTakeover = dz.serverNoCtx
	}
	return c
}

// Compression reports whether the handshake agreed on permessage-deflate
// (see the Compression option).
func (c *Conn) Compression() bool { return c.dz.on }

// Subprotocol is the subprotocol the server chose, or "".
func (c *Conn) Subprotocol() string { return c.proto }

// LocalAddr is the client's address (see RemoteAddr, the option).
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr is the server's address, a made-up one in TEST-NET-1.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Done is closed when the connection has ended, whichever side ended it.
// When the server closed first, what it sent before is still read.
func (c *Conn) Done() <-chan struct{} { return c.ended.ch }

// ReadMessage reads the next whole message; the slice is the caller's.
// Pings that arrive first are answered, pongs passed to OnPong. When the
// server closes the connection, it returns the server's *ginws.CloseError
// (after answering the close frame); a frame that breaks RFC 6455 fails the
// connection and returns a *ginws.ProtocolError.
//
// When ctx ends before a message has begun to arrive, ReadMessage returns
// ctx.Err() and the connection stays usable; in the middle of a message,
// the connection is dropped.
func (c *Conn) ReadMessage(ctx context.Context) (ginws.MessageType, []byte, error) {
	c.reading.Add(1)
	defer func() {
		// A close waiting for the server's answer reads it itself once
		// the last reader has gone (it may return a data message, and the
		// caller stop reading).
		if c.reading.Add(-1) == 0 && c.closeSent.Load() && !c.isDone() {
			select {
			case c.readerLeft <- struct{}{}:
			default:
			}
		}
	}()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return 0, nil, c.rerr
	}
	release, err := bindDeadline(ctx, c.nc.SetReadDeadline)
	if err != nil {
		return 0, nil, err
	}
	defer release()
	op, err := c.fr.NextMessage()
	if err != nil {
		return 0, nil, c.readErr(ctx, err, false)
	}
	p := make([]byte, 0, min(max(c.fr.Left(), 512), 64<<10))
	for {
		if len(p) == cap(p) {
			p = append(p, 0)[:len(p)]
		}
		n, err := c.fr.Read(p[len(p):cap(p)])
		p = p[:len(p)+n]
		if err == io.EOF {
			return ginws.MessageType(op), p, nil
		}
		if err != nil {
			return 0, nil, c.readErr(ctx, err, true)
		}
	}
}

// WriteMessage sends p as one message of type t (a masked frame). p is
// sent as it is, even a text message that is not valid UTF-8, so a test
// can check how the server treats one. If ctx ends while the message is
// being written, the connection is dropped.
func (c *Conn) WriteMessage(ctx context.Context, t ginws.MessageType, p []byte) error {
	if t != ginws.MessageText && t != ginws.MessageBinary {
		return fmt.Errorf("ginwstest: cannot write a message of type %v", t)
	}
	return c.writeFrame(ctx, ws.OpCode(t), p)
}

// Ping sends a ping with payload p (at most 125 bytes). The server's pong
// is consumed by whoever reads (see OnPong).
func (c *Conn) Ping(ctx context.Context, p []byte) error {
	if len(p) > frame.MaxControlPayload {
		return errors.New("ginwstest: ping payload over 125 bytes")
	}
	return c.writeFrame(ctx, ws.OpPing, p)
}

// Close closes the connection with 1000. See CloseWith.
func (c *Conn) Close() error { return c.CloseWith(ginws.StatusNormalClosure, "") }

// CloseWith starts the close handshake with code and reason, waits for the
// server's close frame (reading and discarding data messages when no
// ReadMessage is in progress), closes the connection, and then waits for
// the handler to return, each no longer than the close timeout (see
// CloseTimeout). A read in progress ends with the server's
// *ginws.CloseError; later writes fail with ginws.ErrClosed.
//
// It returns nil when the handler has returned, ErrHandlerRunning when it
// has not within the close timeout, and a *PanicError when a panic escaped
// the http.Handler. Calling it again, or after the server closed, only
// waits for the handler. Any close code that may be sent is accepted,
// 1000-1003, 1007-1014 and 3000-4999.
func (c *Conn) CloseWith(code ginws.StatusCode, reason string) error {
	if !validCloseCode(code) {
		return fmt.Errorf("ginwstest: %d is not a close code that may be sent", code)
	}
	c.closedUs.Store(true)
	if c.closeSent.CompareAndSwap(false, true) {
		if err := c.sendClose(uint16(code), reason); err == nil {
			c.awaitClose(time.Now().Add(c.cfg.closeTimeout))
		}
	}
	c.waitDone()
	return c.srv.wait(c.cfg.closeTimeout)
}

func validCloseCode(code ginws.StatusCode) bool {
	return code >= 0 && code <= 0xFFFF && frame.ValidCloseCode(uint16(code))
}

// awaitClose waits for the server's close frame after ours. When nobody is
// reading, it reads (and discards data) itself.
func (c *Conn) awaitClose(deadline time.Time) {
	for !c.isDone() {
		if c.readOwnClose(deadline) {
			return
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-c.done:
		case <-c.readerLeft: // try again: the reader may have gone
		case <-t.C:
			c.markDone(errCloseTimeout)
		}
		t.Stop()
	}
}

// readOwnClose reads up to the server's close frame when nobody else reads,
// and reports whether it did.
func (c *Conn) readOwnClose(deadline time.Time) bool {
	if c.reading.Load() == 0 && c.rmu.TryLock() {
		_ = c.nc.SetReadDeadline(deadline)
		for c.rerr == nil && !c.isDone() {
			if _, err := c.fr.NextMessage(); err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					_ = c.failRead(err)
				}
				break
			}
		}
		c.rmu.Unlock()
		c.markDone(errCloseTimeout)
		return true
	}
	return false
}

var errCloseTimeout = errors.New("ginwstest: the server did not answer the close frame in time")

// waitDone waits for the connection to end, dropping it after the close
// timeout.
func (c *Conn) waitDone() {
	t := time.NewTimer(c.cfg.closeTimeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.markDone(errCloseTimeout)
	}
}

// onControl answers the server's control frames for whoever reads.
func (c *Conn) onControl(op ws.OpCode, p []byte) error {
	switch op {
	case ws.OpPing:
		if c.cfg.onPing != nil {
			c.cfg.onPing(append([]byte(nil), p...)) // p is the reader's pooled buffer
		}
		c.queuePong(p)
	case ws.OpPong:
		if c.cfg.onPong != nil {
			c.cfg.onPong(append([]byte(nil), p...))
		}
	case ws.OpClose:
		code, reason, _ := frame.ParseClose(p) // validated by the reader
		ce := &ginws.CloseError{Code: ginws.StatusCode(code), Reason: string(reason)}
		c.setCause(ce)
		// Even when our Close began first, its frame may still wait for
		// the write lock: one close frame goes out before the end.
		c.closeSent.Store(true)
		_ = c.sendClose(code, "") // echo the server's code, unless ours is out
		// The server closes the TCP connection first (RFC 6455 section
		// 7.1.1); in memory, nothing is gained by waiting for it.
		c.markDone(ce)
		return ce
	}
	return nil
}

// readErr turns an error of the frame reader into what ReadMessage
// returns. A timeout that interrupted nothing leaves the connection
// usable.
func (c *Conn) readErr(ctx context.Context, err error, midMessage bool) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && c.rerr == nil && !c.isDone() {
		// A timeout inside a compressed message stops the frame reader
		// (the decompressor cannot resume): that is mid-message too.
		if midMessage || c.fr.Err() != nil {
			c.rerr = c.lost(err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return c.failRead(err)
}

// failRead ends the connection after a read error and makes it sticky.
func (c *Conn) failRead(err error) error {
	if c.rerr != nil {
		return c.rerr
	}
	var pe *ginws.ProtocolError
	var ce *ginws.CloseError
	switch {
	case errors.As(err, &pe):
		// Fail the connection (RFC 6455 section 7.1.7): the close code the
		// rule calls for, then the end of the connection.
		c.setCause(pe)
		c.closeSent.Store(true)
		_ = c.sendClose(pe.Code, pe.Reason) // unless a close frame is out
		c.markDone(pe)
		c.rerr = pe
	case errors.As(err, &ce):
		c.rerr = ce
	case c.isDone():
		c.rerr = c.endErr()
	default:
		c.rerr = c.lost(err)
	}
	return c.rerr
}

// lost ends the connection after a network error, reporting it as a close
// with StatusAbnormalClosure.
func (c *Conn) lost(cause error) error {
	err := &lostError{close: ginws.CloseError{Code: ginws.StatusAbnormalClosure}, cause: cause}
	c.markDone(err)
	return c.endErr()
}

// lostError is a connection that ended without a close frame. It matches
// *ginws.CloseError with StatusAbnormalClosure and unwraps to the network
// error too (io.EOF when the server dropped the connection).
type lostError struct {
	close ginws.CloseError
	cause error
}

func (e *lostError) Error() string   { return "ginwstest: connection lost: " + e.cause.Error() }
func (e *lostError) Unwrap() []error { return []error{&e.close, e.cause} }

func (c *Conn) writeFrame(ctx context.Context, op ws.OpCode, p []byte) error {
	if err := c.lockWrite(ctx); err != nil {
		return err
	}
	defer c.unlockWrite()
	if c.closedUs.Load() {
		return ginws.ErrClosed
	}
	if c.closeSent.Load() || c.isDone() {
		return c.endErr()
	}
	release, err := bindDeadline(ctx, c.nc.SetWriteDeadline)
	if err != nil {
		return err
	}
	err = c.writeLocked(op, p)
	release()
	if err != nil {
		_ = c.lost(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.endErr()
	}
	return nil
}

// writeLocked writes one masked frame in one write, compressed when
// permessage-deflate was agreed. The write lock must be held.
func (c *Conn) writeLocked(op ws.OpCode, p []byte) error {
	var mask [4]byte
	m := rand.Uint32()
	mask[0], mask[1], mask[2], mask[3] = byte(m), byte(m>>8), byte(m>>16), byte(m>>24)
	var rsv byte
	if c.dz.on && len(p) > 0 && (op == ws.OpText || op == ws.OpBinary) {
		z := frame.GetCompressor(c.dz.level)
		p, _ = z.Compress(nil, p, -1)
		frame.PutCompressor(z)
		rsv = frame.RSV1
	}
	b := frame.AppendFrame(make([]byte, 0, frame.MaxHeaderSize+len(p)), true, rsv, op, p, &mask)
	_, err := c.nc.Write(b)
	return err
}

// lockWrite takes the write lock, giving up when ctx or the connection
// ends first.
func (c *Conn) lockWrite(ctx context.Context) error {
	select {
	case c.wsem <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.wsem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.endErr()
	}
}

// unlockWrite releases the write lock and sends a pong the reader left.
func (c *Conn) unlockWrite() {
	<-c.wsem
	if c.pongWait.Load() {
		c.flushPong()
	}
}

// queuePong answers a ping. When a writer holds the lock, the reader does
// not wait for it (the writer may be waiting for the server, which may be
// waiting for this pong): the writer sends the latest pong on release.
func (c *Conn) queuePong(p []byte) {
	c.ctrlMu.Lock()
	c.pong = append(c.pong[:0], p...)
	c.ctrlMu.Unlock()
	c.pongWait.Store(true)
	c.flushPong()
}

func (c *Conn) flushPong() {
	for c.pongWait.Load() {
		select {
		case c.wsem <- struct{}{}:
		default:
			return // the holder flushes on release
		}
		if c.pongWait.Swap(false) && !c.closeSent.Load() && !c.isDone() {
			c.ctrlMu.Lock()
			p := append([]byte(nil), c.pong...)
			c.ctrlMu.Unlock()
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.closeTimeout))
			err := c.writeLocked(ws.OpPong, p)
			_ = c.nc.SetWriteDeadline(time.Time{})
			if err != nil {
				_ = c.lost(err)
			}
		}
		<-c.wsem
	}
}

// sendClose writes a close frame, waiting for the write lock no longer
// than the close timeout.
func (c *Conn) sendClose(code uint16, reason string) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.closeTimeout)
	defer cancel()
	if err := c.lockWrite(ctx); err != nil {
		c.markDone(err)
		return err
	}
	defer c.unlockWrite()
	if c.isDone() {
		return c.endErr()
	}
	if c.closeOut {
		return nil // one close frame per connection
	}
	c.closeOut = true
	var payload [frame.MaxControlPayload]byte
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.cfg.closeTimeout))
	err := c.writeLocked(ws.OpClose, frame.AppendClose(payload[:0], code, reason))
	_ = c.nc.SetWriteDeadline(time.Time{})
	if err != nil {
		_ = c.lost(err)
		return err
	}
	return nil
}

// markDone records why the connection ended (the first cause wins), closes
// the client end and wakes everyone waiting.
func (c *Conn) markDone(cause error) {
	c.setCause(cause)
	c.doneOnce.Do(func() {
		_ = c.nc.Close()
		close(c.done)
		c.ended.fire()
	})
}

func (c *Conn) setCause(cause error) {
	c.errMu.Lock()
	if c.cerr == nil {
		c.cerr = cause
	}
	c.errMu.Unlock()
}

// endErr is what calls return once the connection has ended: the
// server's close, or the lost connection, as a *ginws.CloseError;
// otherwise an error matching ginws.ErrClosed.
func (c *Conn) endErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	var ce *ginws.CloseError
	switch {
	case errors.As(c.cerr, &ce):
		return c.cerr
	case c.cerr != nil:
		return fmt.Errorf("%w: %w", ginws.ErrClosed, c.cerr)
	}
	return ginws.ErrClosed
}

func (c *Conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}
