package ginws

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/gobwas/ws"

	"github.com/ginws/ginws/internal/frame"
	"github.com/ginws/ginws/internal/pool"
	"github.com/ginws/ginws/internal/rbuf"
)

// pumpDelay is how long after its last read call a handler that writes is
// taken to be write-only, so ginws starts reading control frames for it.
const pumpDelay = 50 * time.Millisecond

// ReadMessage reads the next whole message. The returned slice is valid
// until the next read call on the connection (its buffer is reused). A
// message over the payload limit ends the connection with 1009 and
// ErrMessageTooBig. When ctx ends or a read deadline passes before a
// message has begun, the error is returned and the connection stays
// usable; in the middle of a message, the connection is dropped.
func (c *Conn) ReadMessage(ctx context.Context) (MessageType, []byte, error) {
	if err := c.beginRead(ctx); err != nil {
		c.endRead()
		return 0, nil, err
	}
	defer c.endRead()
	return c.readMessageLocked(ctx)
}

// readMessageLocked is ReadMessage for a caller that holds the read side.
func (c *Conn) readMessageLocked(ctx context.Context) (MessageType, []byte, error) {
	c.releaseMsg()
	op, err := c.nextMessage()
	if err != nil {
		return 0, nil, c.readErr(ctx, err, false)
	}
	b, err := c.readPayload(ctx)
	if err != nil {
		return 0, nil, err
	}
	return MessageType(op), b, nil
}

// readPayload reads the rest of the current message into a pooled buffer.
// It is apart from ReadMessage, whose frame stays on the stack while an
// idle connection waits, to keep that frame small.
//
//go:noinline
func (c *Conn) readPayload(ctx context.Context) ([]byte, error) {
	buf := pool.Get(c.startSize(c.sizeHint(64 << 10)))
	b := *buf
	for {
		if len(b) == cap(b) {
			if limit := c.fr.Limit; limit > 0 && int64(len(b)) >= limit {
				// The buffer holds the whole limit: the message ends here
				// or is too big. Growing the buffer to find out would take
				// one of twice the limit, for a compressed message (which
				// tells its size only as it inflates) one byte before it
				// fails; Discard fails after that byte without a buffer.
				if err := c.fr.Discard(); err != nil {
					pool.Put(buf)
					return nil, c.readErr(ctx, err, true)
				}
				break
			}
			nb := pool.Get(growSize(cap(b)))
			*nb = append(*nb, b...)
			*buf = b
			pool.Put(buf)
			buf, b = nb, *nb
		}
		n, err := c.fr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			pool.Put(buf)
			return nil, c.readErr(ctx, err, true)
		}
	}
	*buf = b
	c.msg = buf
	return b, nil
}

// NextReader starts the next message and returns a reader of its payload,
// for messages too large to hold whole. The reader returns io.EOF at the
// end of the message and is valid until the next read call.
func (c *Conn) NextReader(ctx context.Context) (MessageType, io.Reader, error) {
	if err := c.beginRead(ctx); err != nil {
		c.endRead()
		return 0, nil, err
	}
	defer c.endRead()
	c.releaseMsg()
	op, err := c.nextMessage()
	if err != nil {
		return 0, nil, c.readErr(ctx, err, false)
	}
	return MessageType(op), &c.mr, nil
}

type messageReader struct{ c *Conn }

func (m *messageReader) Read(p []byte) (int, error) {
	c := m.c
	if err := c.beginRead(context.Background()); err != nil {
		c.endRead()
		return 0, err
	}
	defer c.endRead()
	if !c.fr.Open() || c.pending {
		return 0, io.EOF // this reader's message is over; the open one is the next
	}
	n, err := c.fr.Read(p)
	if err != nil && err != io.EOF {
		err = c.readErr(context.Background(), err, false)
	}
	return n, err
}

// Read reads the byte stream (io.Reader). Off object mode it returns the
// bytes that have arrived, across messages, waiting only when there are
// none; in object mode it returns bytes of one message, and waits for the
// rest of a message that has begun until p is full or the message ends.
// A close by the peer with 1000, 1001 or no status ends it with io.EOF (in
// object mode, with io.ErrUnexpectedEOF when it came in the middle of a
// message); other endings return their error.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.beginRead(context.Background()); err != nil {
		err = c.streamErr(err)
		c.endRead()
		return 0, err
	}
	n, err := c.stream().Read(p)
	if err != nil {
		// In object mode a Read is one message: once part of one has been
		// returned, a timeout ends the connection, or the next Read would
		// return the rest as a message of its own. The byte stream has no
		// such bounds, and goes on where it stopped.
		mid := c.cfg.objectMode && n > 0
		err = c.streamErr(c.readErr(context.Background(), err, mid))
	}
	c.endRead()
	return n, err
}

// WriteTo copies the stream to w until it ends (io.WriterTo, so
// io.Copy(w, conn) uses it). In object mode every message is written to w
// in one Write; to a *Conn it keeps its type (text or binary). A normal
// close by the peer ends the copy with a nil error, but in object mode
// with io.ErrUnexpectedEOF when it cut a message that Read had begun. A
// Write to w that takes less than it was given, without an error, ends the
// copy with io.ErrShortWrite.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	dst, _ := w.(*Conn)
	n, err := c.copyRest(w, dst)
	total := int64(n)
	for err == nil {
		if c.cfg.objectMode {
			n, err = c.copyMessage(w, dst)
		} else {
			n, err = c.copyChunks(w)
		}
		total += int64(n)
	}
	if normalClosure(err) {
		err = nil
	}
	return total, err
}

// copyRest copies what is left of a message that Read had begun (a
// handler that read a prefix, or a bufio.Reader handing over to WriteTo):
// in object mode in one Write, as the rest of that message.
func (c *Conn) copyRest(w io.Writer, dst *Conn) (int, error) {
	st := c.st.Load()
	if st == nil {
		return 0, nil
	}
	if err := c.beginRead(context.Background()); err != nil {
		c.endRead()
		return 0, err
	}
	defer c.endRead()
	// A pending message is the pump's next one: the stream's was over
	// (another read call took the rest of it).
	if !st.TakeOpen() || !c.fr.Open() || c.pending {
		return 0, nil
	}
	if !c.cfg.objectMode {
		return c.forwardChunks(w)
	}
	t := MessageType(c.fr.Opcode())
	c.releaseMsg()
	p, err := c.readPayload(context.Background())
	if err != nil {
		if normalClosure(err) {
			// Read returned the start of this message: its truncation is
			// reported as Read would, not as a clean end.
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if len(p) == 0 {
		// Read returned all the bytes but had not seen the end (an empty
		// last frame): that end is no message of its own.
		return 0, nil
	}
	return c.forward(w, dst, t, p)
}

// forward writes one message read in object mode to w.
func (c *Conn) forward(w io.Writer, dst *Conn, t MessageType, p []byte) (int, error) {
	if dst != nil {
		if err := dst.WriteMessage(context.Background(), t, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return writeFull(w, p)
}

// writeFull writes p to w in one Write, reporting a Write that took less
// than all of p without an error as io.ErrShortWrite, as io.Copy does.
func writeFull(w io.Writer, p []byte) (int, error) {
	n, err := w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

func (c *Conn) copyMessage(w io.Writer, dst *Conn) (int, error) {
	t, p, err := c.ReadMessage(context.Background())
	if err != nil {
		return 0, err
	}
	return c.forward(w, dst, t, p)
}

// copyChunks forwards one message in chunks, holding a buffer only while
// the message is open.
func (c *Conn) copyChunks(w io.Writer) (int, error) {
	if err := c.beginRead(context.Background()); err != nil {
		c.endRead()
		return 0, err
	}
	defer c.endRead()
	c.releaseMsg()
	if _, err := c.nextMessage(); err != nil {
		return 0, c.readErr(context.Background(), err, false)
	}
	return c.forwardChunks(w)
}

// forwardChunks copies the open message to w; apart from copyChunks to
// keep the frame an idle connection waits in small.
//
//go:noinline
func (c *Conn) forwardChunks(w io.Writer) (int, error) {
	want := c.sizeHint(32 << 10)
	buf := pool.Get(c.startSize(want))
	defer func() { pool.Put(buf) }()
	b := (*buf)[:cap(*buf)]
	total := 0
	for {
		n, err := c.fr.Read(b)
		if n > 0 {
			// Written at once, even when the read filled the buffer: the
			// next read may wait for the peer, which may wait for these.
			wn, werr := writeFull(w, b[:n])
			total += wn
			if werr != nil {
				return total, werr
			}
		}
		if n == len(b) && len(b) < want && err == nil {
			// The bytes are coming: read the rest in a buffer of the
			// size the frame asked for.
			nb := pool.Get(want)
			pool.Put(buf)
			buf, b = nb, (*nb)[:cap(*nb)]
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, c.readErr(context.Background(), err, true)
		}
	}
}

// sizeHint is the buffer size to start reading the open message with, at
// most limit: its first frame's size, or four times that for a compressed
// message, which is inflated as it is read.
func (c *Conn) sizeHint(limit int) int {
	n := c.fr.Left()
	if c.fr.Compressed() && c.dz.on {
		n = min(n, int64(limit)) * 4
	}
	return int(min(n, int64(limit)))
}

// startSize is the buffer size to start reading a message into: its
// sizeHint (hint), but no more than inHandFactor times the bytes in hand
// (and at least what one read of the socket takes, rbuf.Size). A peer
// that sends a frame header claiming a large length and stalls makes the
// connection hold a buffer sized from what it sent, not from what it
// claimed; a message whose bytes are coming (the read that brought its
// header filled the read buffer) is read in one buffer, mostly in one read
// of the socket, as it would be from its claimed length.
func (c *Conn) startSize(hint int) int {
	have := c.br.Buffered()
	if c.fr.Compressed() && c.dz.on {
		have *= 4
	}
	return min(hint, max(inHandFactor*have, rbuf.Size))
}

// inHandFactor bounds the buffer a message starts in by the bytes in hand:
// a full read buffer (4 KiB) starts a 64 KiB message in one buffer.
// Growing from less costs a copy and a read of the socket per step, about
// a tenth of a 64 KiB echo's CPU time on loopback.
const inHandFactor = 16

// growSize is the size a full message buffer of n bytes grows to: four
// times n up to 64 KiB, so a message of up to 64 KiB is copied at most
// twice (from 4 KiB); twice n above that. A buffer that grew is thus never
// more than four times the bytes that arrived.
func growSize(n int) int {
	if n < 64<<10 {
		return 4 * n
	}
	return 2 * n
}

// beginRead takes the read side; endRead must follow, whatever it returns.
// A pump blocked in a read is kicked out of it so the caller does not wait
// for the peer. Once this side is closing it is not: the pump may be
// reading through a compressed message to the peer's close, which a kick
// would leave half inflated; the close timeout bounds that wait.
func (c *Conn) beginRead(ctx context.Context) error {
	c.reading.Add(1)
	c.rwait.Add(1)
	if !c.rmu.TryLock() {
		if c.pumpState.Load()&pumpOn != 0 && !c.closeSent.Load() {
			c.rdl.override(aLongTimeAgo)
		}
		c.rmu.Lock()
	}
	c.rwait.Add(-1)
	if c.rerr != nil {
		return c.rerr
	}
	return c.rdl.bind(ctx, c.done)
}

func (c *Conn) endRead() {
	c.rdl.release()
	c.lastRead.Store(int64(time.Since(epoch))) // one clock read; time.Now takes two
	c.rmu.Unlock()
	c.reading.Add(-1)
}

func (c *Conn) nextMessage() (ws.OpCode, error) {
	if c.pending {
		c.pending = false
		return c.fr.Opcode(), nil
	}
	return c.fr.NextMessage()
}

func (c *Conn) releaseMsg() {
	if c.msg != nil {
		pool.Put(c.msg)
		c.msg = nil
	}
}

// readErr turns an error of the frame reader into what the caller sees.
// Timeouts that interrupted nothing leave the connection usable.
func (c *Conn) readErr(ctx context.Context, err error, midMessage bool) error {
	if isTimeout(err) && c.rerr == nil && !c.isDone() {
		// A timeout inside a compressed message stops the frame reader
		// (the decompressor cannot resume): that is mid-message too.
		ctxErr := c.ctxErr(ctx) // before the abort, which cancels contexts derived from Context
		if midMessage || c.fr.Err() != nil {
			c.abort(err)
			c.rerr = c.endErr()
		}
		if ctxErr != nil {
			return ctxErr
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
	if pe, ok := errors.AsType[*frame.Error](err); ok {
		c.failProtocol(pe)
		c.rerr = pe
		return pe
	}
	if ce, ok := errors.AsType[*CloseError](err); ok {
		c.answerClose(ce)
		c.rerr = ce
		return ce
	}
	if !c.isDone() {
		// The first recorded cause wins: a connection ended on purpose
		// (idle timeout, shutdown) closes the socket before done is
		// closed, and its reader must report that cause, not the socket's.
		c.markDone(&CloseError{Code: StatusAbnormalClosure, cause: err})
	}
	c.rerr = c.endErr()
	return c.rerr
}

// streamErr is how the byte stream reports an ending: io.EOF when the
// peer closed normally, but in object mode io.ErrUnexpectedEOF when it
// closed in the middle of a message (whose Reads would otherwise pass for
// a whole message). The caller holds the read side.
func (c *Conn) streamErr(err error) error {
	if normalClosure(err) {
		if c.cfg.objectMode && c.fr.Open() {
			return io.ErrUnexpectedEOF
		}
		return io.EOF
	}
	return err
}

// controller is a Conn as its frame reader's Controller (a conversion,
// where the method value c.onControl would be an allocation per upgrade).
type controller Conn

func (c *controller) Control(op ws.OpCode, p []byte) error { return (*Conn)(c).onControl(op, p) }

// onControl handles the control frames found by whoever is reading: a
// ping is answered, a close is recorded and returned (see answerClose).
func (c *Conn) onControl(op ws.OpCode, p []byte) error {
	switch op {
	case ws.OpPing:
		c.queuePong(p)
	case ws.OpClose:
		code, reason, _ := frame.ParseClose(p) // already validated
		ce := &CloseError{Code: StatusCode(code), Reason: string(reason)}
		c.errMu.Lock()
		if errors.Is(c.cerr, ErrSendQueueFull) {
			// This side closed for a full send queue and the peer answered:
			// calls return the peer's close from now on (see ErrClosed),
			// which still matches ErrSendQueueFull.
			ce.cause, c.cerr = c.cerr, ce
		}
		c.errMu.Unlock()
		c.setCause(ce) // before closeSent flips, so writers report the peer's close
		// The frame reader stops with ce, and failRead answers it: there
		// the read call's stack is shallower than here, inside the frame
		// reader, where writing the answer made the runtime copy the
		// goroutine's stack to twice its size at every connection's end.
		return ce
	}
	return nil
}

// answerClose completes the close handshake the peer started: our close
// frame with its code (unless we sent one first), then the TCP close.
// Every reader of frames passes the peer's *CloseError to failRead, which
// calls this once, with the read lock held.
func (c *Conn) answerClose(ce *CloseError) {
	// Even when this side began closing first, its close frame may still
	// wait for the write lock: the one close frame goes out before the
	// socket is closed, whoever writes it.
	c.closeSent.Store(true)
	_ = c.sendClose(uint16(ce.Code), "") // echo the peer's code, unless ours is out
	if c.br.Buffered() == 0 {
		// Both close frames have crossed and the peer may send nothing
		// after its own: with nothing unread, closing the socket now
		// sends FIN (not RST) behind our close frame, and the server
		// closes TCP first, as RFC 6455 section 7.1.1 asks. That saves
		// the half-close and the wait for the peer's FIN.
		c.markDone(ce)
	} else {
		c.lingerClose(ce, closedGrace)
	}
}

// failProtocol fails the connection as RFC 6455 section 7.1.7 asks: a
// close frame with the code the violation calls for, then the TCP close.
// The write side is shut at once, so the peer sees the end; the read side
// is drained when the handler returns (finish), so the handler gets the
// error without waiting for the peer.
func (c *Conn) failProtocol(pe *frame.Error) {
	c.setCause(pe)
	c.closeSent.Store(true)
	_ = c.sendClose(pe.Code, pe.Reason) // unless a close frame is out already
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.lingering.Store(true)
}

// closedGrace is how long the TCP close waits for the peer's FIN once both
// close frames have crossed while bytes the peer sent after its close
// frame are unread: the protocol is over, this only gives them a chance to
// be read instead of reset.
const closedGrace = 100 * time.Millisecond

// lingerClose ends the TCP connection after the close frames: it half-
// closes the write side, so the peer reads EOF at once, and discards what
// the peer still sends until it closes too (or wait passes), so the kernel
// sends FIN, not RST, and the close frame reaches the peer.
func (c *Conn) lingerClose(cause error, wait time.Duration) {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.rdl.override(time.Now().Add(wait))
	for {
		if _, err := c.br.Discard(4096); err != nil {
			break
		}
	}
	c.markDone(cause)
}

// startPump starts reading control frames for a handler that is not
// reading, after a write or a close.
func (c *Conn) startPump() {
	if c.pumpState.Load()&pumpOn != 0 || c.reading.Load() > 0 || c.pumpBarred() {
		return
	}
	c.pumpMu.Lock()
	defer c.pumpMu.Unlock()
	if c.pumpStopped || c.pumpBarred() || c.pumpState.Or(pumpOn)&pumpOn != 0 {
		return
	}
	c.pumpWG.Add(1)
	go c.pump()
}

func (c *Conn) pump() {
	defer c.pumpWG.Done()
	defer c.pumpExit()
	for c.rwait.Load() == 0 && c.rmu.TryLock() {
		if c.pending || c.fr.Open() && !c.fr.Between() || c.rerr != nil || c.isDone() || c.pumpBarred() {
			c.rmu.Unlock()
			return
		}
		// The handler's read deadline bounds its read calls, not this
		// read, which would otherwise stop for good once it passed. A
		// read call that counted itself in rwait after this look kicks
		// the pump after the deadline was lifted.
		c.rdl.lift()
		if c.rwait.Load() != 0 {
			c.rmu.Unlock()
			return
		}
		var started, more bool
		var err error
		if c.fr.Open() {
			// The handler has had every byte of the open message so far
			// (a Read that its last bytes filled, before an empty last
			// frame): read the control frames up to its next payload,
			// which is the handler's, or to its end.
			if _, err = c.fr.Read(nil); err == io.EOF {
				c.rmu.Unlock()
				continue
			}
			more = err == nil
		} else {
			started, err = c.fr.Advance()
		}
		if err == nil && (started || more) && c.closeSent.Load() {
			// This side is closing, and the Close waiting for the answer
			// found the pump reading: the pump reads on to the peer's close.
			c.discardUntilClose()
			c.rmu.Unlock()
			return
		}
		if err != nil {
			if !isTimeout(err) {
				closing := c.closeSent.Load() // a Close waits for the answer
				_ = c.failRead(err)
				if closing {
					c.lingerFailed()
				}
			}
			c.rmu.Unlock()
			return
		}
		c.pending = started
		c.rmu.Unlock()
		if started || more {
			// A Close that came after the check above found the read lock
			// held, and waits for the peer's answer without reading: read
			// on to it, unless someone else has the read side by now.
			if c.closeSent.Load() && c.reading.Load() == 0 && c.rmu.TryLock() {
				if c.rerr == nil && !c.isDone() {
					c.discardUntilClose()
				}
				c.rmu.Unlock()
			}
			return
		}
	}
}

// pumpExit takes down the pump's flag. A write that found it set while
// the pump was leaving left its look to the pump (pumpWanted): it is taken
// here, as if the pump had never run, so that a handler that read, wrote
// within pumpDelay and then only waits still gets its pings and close
// answered.
func (c *Conn) pumpExit() {
	if h := pumpExitHook.Load(); h != nil {
		(*h)()
	}
	if c.pumpState.And(^uint32(pumpOn|pumpWanted))&pumpWanted != 0 && !c.isDone() {
		c.pumpAfterWrite()
	}
}

func (c *Conn) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// streamSource and streamSink are the Conn as seen by internal/stream;
// their methods run under the read lock and the write path respectively.
type streamSource Conn

func (s *streamSource) NextMessage() error {
	_, err := (*Conn)(s).nextMessage()
	return err
}

// ReadMessage reads the stream's open message. When the pump has begun the
// next one, the stream's was over (another read call took the rest of it):
// io.EOF, and NextMessage takes the pending one.
func (s *streamSource) ReadMessage(p []byte) (int, error) {
	if s.pending {
		return 0, io.EOF
	}
	return s.fr.Read(p)
}

// Buffered: bytes of the next message are in hand, whether its header is
// still to be read or the pump (or an event-driven read) has read it.
func (s *streamSource) Buffered() bool {
	if s.pending {
		return s.fr.Readable()
	}
	return s.fr.Buffered()
}

type streamSink Conn

func (s *streamSink) WriteMessage(p []byte) error {
	c := (*Conn)(s)
	op := ws.OpBinary
	if c.cfg.streamText {
		op = ws.OpText
		if c.cfg.objectMode && !frame.ValidUTF8(p) {
			return ErrNotUTF8
		}
	}
	return c.writeFrame(context.Background(), op, p)
}
