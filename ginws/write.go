package ginws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/ginws/ginws/internal/frame"
	"github.com/ginws/ginws/internal/pool"
)

// WriteMessage sends p as one message of type t. It is safe to call from
// any number of goroutines; messages go out whole, one after another. If
// ctx ends or a write deadline passes while the message is being written,
// the connection is dropped (the peer would otherwise see half a frame).
func (c *Conn) WriteMessage(ctx context.Context, t MessageType, p []byte) error {
	if t != MessageText && t != MessageBinary {
		return fmt.Errorf("ginws: cannot write a message of type %v", t)
	}
	return c.writeFrame(ctx, ws.OpCode(t), p)
}

// Ping sends a ping with payload p (at most 125 bytes). The peer's pong is
// consumed by whoever reads.
func (c *Conn) Ping(ctx context.Context, p []byte) error {
	if len(p) > frame.MaxControlPayload {
		return errors.New("ginws: ping payload over 125 bytes")
	}
	return c.writeFrame(ctx, ws.OpPing, p)
}

// Write writes p to the byte stream (io.Writer): one message, sent at
// once, binary unless StreamText is set.
func (c *Conn) Write(p []byte) (int, error) {
	// With StreamText, a Write whose bytes are all held back (the start of
	// a rune) sends nothing: it must still fail once the stream is closed.
	if c.closeSent.Load() || c.isDone() {
		return 0, c.endErr()
	}
	return c.stream().Write(p)
}

func (c *Conn) writeFrame(ctx context.Context, op ws.OpCode, p []byte) error {
	if err := c.lockWrite(ctx); err != nil {
		return err
	}
	if c.closeSent.Load() || c.isDone() {
		c.unlockWrite()
		return c.endErr()
	}
	err := c.wdl.bind(ctx, c.done)
	if err == nil {
		err = c.writeLocked(op, p)
		c.wdl.release()
		if err != nil {
			ctxErr := c.ctxErr(ctx) // before the abort, which cancels contexts derived from Context
			c.abort(err)
			switch {
			case ctxErr != nil:
				err = ctxErr
			case isTimeout(err) && c.endedBy(err):
				// Its write deadline passed and ended the connection:
				// this call reports the timeout, the calls after it only
				// the end (endErr).
				err = fmt.Errorf("%w: %w", net.ErrClosed, err)
			default:
				err = c.endErr() // the peer's close, when that is what ended it
			}
		}
	}
	c.unlockWrite()
	if err == nil {
		c.pumpAfterWrite()
	}
	return err
}

// pumpAfterWrite starts the control-frame pump after a write (a direct
// one or a broadcast's) when the handler is not reading. A write less than
// pumpDelay after the last read call returned is looked at again once the
// delay has passed (the Server's recheck list): the handler may neither
// read nor write again.
func (c *Conn) pumpAfterWrite() {
	if c.reading.Load() != 0 {
		return
	}
	if s := c.pumpState.Load(); s&pumpOn != 0 {
		// The pump may be on its way out: a read call took the read side
		// from it and has returned, and its flag is still set. It looks
		// at pumpWanted as it leaves (pumpExit); if it left before the
		// bit was set, this write looks for itself. The bit stays: taking
		// it down could take down another writer's, set for a pump that
		// started meanwhile; left over, it costs the next pump's exit one
		// more look.
		if s&pumpWanted != 0 || c.pumpState.Or(pumpWanted)&pumpOn != 0 {
			return
		}
	}
	if int64(time.Since(epoch))-c.lastRead.Load() > int64(pumpDelay) {
		c.startPump()
		return
	}
	if c.pumpState.Load()&pumpRecheck == 0 && c.pumpState.Or(pumpRecheck)&pumpRecheck == 0 {
		c.srv.recheck.add(c)
	}
}

// copyLimit is the largest frame built by copying into one buffer; larger
// payloads go out with their header in one writev, without a copy.
const copyLimit = 4 << 10

// writeLocked puts one frame on the wire in one system call. The buffer a
// small frame is built in comes from a pool for the length of the write,
// so an idle connection holds no write buffer. A compressed frame is built
// in a pooled buffer too.
func (c *Conn) writeLocked(op ws.OpCode, p []byte) error {
	c.wseq.Add(1) // odd while a write is on the wire, for the keepalive
	defer c.wseq.Add(1)
	if c.compresses(op, len(p)) {
		if buf, f := c.deflateLocked(op, p); buf != nil {
			_, err := c.nc.Write(f)
			pool.Put(buf)
			return err
		}
	}
	if frame.HeaderSize(len(p), false)+len(p) <= copyLimit {
		return c.writeCopied(op, p)
	}
	v := vectors.Get().(*vector)
	v.iov[0] = frame.AppendHeader(v.hdr[:0], true, 0, op, len(p), nil)
	v.iov[1] = p
	v.bufs = v.iov[:]
	_, err := v.bufs.WriteTo(c.nc)
	v.iov[1], v.bufs = nil, nil
	vectors.Put(v)
	return err
}

// vector is a large frame's header and payload, written in one writev.
// It comes from a pool for the length of the write: net.Buffers.WriteTo
// would move vectors on the stack to the heap, and a connection keeping
// its own would carry 88 bytes it seldom uses.
type vector struct {
	hdr  [frame.MaxHeaderSize]byte
	iov  [2][]byte
	bufs net.Buffers // what WriteTo consumes
}

var vectors = sync.Pool{New: func() any { return new(vector) }}

// writeLock is a connection's write lock. Taking it while it is free, and
// letting it go while nobody waits, is one compare-and-swap each. A writer
// that finds it held joins a queue and waits on a channel of its own, so
// that it can give up with its context or the connection; letting the lock
// go hands it to the writer that has waited longest. So a writer that never
// stops writing cannot keep one that waits (a close frame, a broadcast) out.
// The queue is made by the first writer that ever waits: most connections
// never have one.
type writeLock struct {
	state atomic.Int32 // wlHeld, and wlQueued while the queue holds writers
	q     atomic.Pointer[writeQueue]
}

type writeQueue struct {
	mu      sync.Mutex
	waiters []chan struct{} // oldest first; each of capacity 1, from wakeChans
}

const (
	wlHeld   = 1
	wlQueued = 2 // set only while held, and only under the queue's mu
)

// wakeChans holds the channels of waiting writers: each is empty when it
// is put back.
var wakeChans = sync.Pool{New: func() any { return make(chan struct{}, 1) }}

func (l *writeLock) tryLock() bool { return l.state.CompareAndSwap(0, wlHeld) }

// lock takes the lock, or gives up and returns false when ctx or done ends
// first (a nil done never ends).
func (l *writeLock) lock(ctx context.Context, done <-chan struct{}) bool {
	if l.tryLock() {
		return true
	}
	q := l.q.Load()
	if q == nil {
		l.q.CompareAndSwap(nil, new(writeQueue))
		q = l.q.Load()
	}
	q.mu.Lock()
	// Under q.mu the state changes only by a tryLock of a free lock or an
	// unlock of a held one that nobody waits for.
	for {
		s := l.state.Load()
		if s == 0 {
			if l.state.CompareAndSwap(0, wlHeld) {
				q.mu.Unlock()
				return true
			}
			continue
		}
		if s&wlQueued != 0 || l.state.CompareAndSwap(wlHeld, wlHeld|wlQueued) {
			break
		}
	}
	wake := wakeChans.Get().(chan struct{})
	q.waiters = append(q.waiters, wake)
	q.mu.Unlock()
	select {
	case <-wake:
		wakeChans.Put(wake)
		return true
	case <-ctx.Done():
	case <-done:
	}
	q.mu.Lock()
	select {
	case <-wake: // handed over while giving up: pass it on
		q.mu.Unlock()
		wakeChans.Put(wake)
		l.unlock()
		return false
	default:
	}
	i := slices.Index(q.waiters, wake)
	q.waiters = slices.Delete(q.waiters, i, i+1)
	if len(q.waiters) == 0 {
		l.state.Store(wlHeld)
	}
	q.mu.Unlock()
	wakeChans.Put(wake)
	return false
}

// unlock lets the lock go, or hands it to the writer that has waited
// longest.
func (l *writeLock) unlock() {
	if l.state.CompareAndSwap(wlHeld, 0) {
		return
	}
	q := l.q.Load() // wlQueued was set: there is a queue
	q.mu.Lock()
	if len(q.waiters) == 0 { // the last one gave up meanwhile
		l.state.Store(0)
		q.mu.Unlock()
		return
	}
	next := q.waiters[0]
	q.waiters = slices.Delete(q.waiters, 0, 1)
	if len(q.waiters) == 0 {
		l.state.Store(wlHeld)
	}
	next <- struct{}{} // never blocks: its only token
	q.mu.Unlock()
}

// lockWrite takes the write lock, giving up when ctx or the connection
// ends first.
func (c *Conn) lockWrite(ctx context.Context) error {
	if c.wl.lock(ctx, c.done) {
		return nil
	}
	if c.pongWait.Load() {
		// The lock may have been handed over as this writer gave up (it
		// passed it on without sending a pong the reader had left).
		c.flushPong()
	}
	return c.callErr(ctx)
}

// tryLockWrite takes the write lock if it is free.
func (c *Conn) tryLockWrite() bool { return c.wl.tryLock() }

// unlockWrite releases the write lock and sends a pong the reader left.
func (c *Conn) unlockWrite() {
	c.wl.unlock()
	if c.pongWait.Load() {
		c.flushPong()
	}
}

// queuePong answers a ping. If a writer holds the lock, the reader does
// not wait for it: the pong is left for the writer to send on release
// (only the latest one, which RFC 6455 section 5.5.3 allows).
func (c *Conn) queuePong(p []byte) {
	c.ctrlMu.Lock()
	if c.pong == nil {
		c.pong = pool.Get(frame.MaxControlPayload)
	}
	*c.pong = append((*c.pong)[:0], p...)
	c.ctrlMu.Unlock()
	c.pongWait.Store(true)
	c.flushPong()
}

func (c *Conn) flushPong() {
	for c.pongWait.Load() {
		if !c.tryLockWrite() {
			return // the holder flushes on release
		}
		if c.pongWait.Swap(false) && !c.closeSent.Load() && !c.isDone() {
			c.ctrlMu.Lock()
			buf := c.pong
			c.pong = nil
			c.ctrlMu.Unlock()
			if buf != nil {
				if err := c.writeControlLocked(ws.OpPong, *buf, c.cfg.closeTimeout); err != nil {
					c.abort(err)
				}
				pool.Put(buf)
			}
		}
		c.wl.unlock()
	}
}

// sendClose writes a close frame, waiting for the write lock no longer
// than the close timeout.
func (c *Conn) sendClose(code uint16, reason string) error {
	if !c.tryLockWrite() { // when it is free, no timer is needed
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.closeTimeout)
		err := c.lockWrite(ctx)
		cancel()
		if err != nil {
			if !c.isDone() {
				err = errCloseBlocked // not the timer's context.DeadlineExceeded
			}
			c.abort(err)
			return err
		}
	}
	defer c.unlockWrite()
	if c.isDone() {
		return c.endErr()
	}
	if err := c.writeCloseLocked(code, reason, c.cfg.closeTimeout); err != nil {
		c.abort(err)
		return err
	}
	return nil
}

// writeControlLocked writes a control frame, built in a pooled buffer (an
// array on the stack would escape through net.Conn.Write), giving the peer
// at most wait to take it. The write lock must be held.
func (c *Conn) writeControlLocked(op ws.OpCode, p []byte, wait time.Duration) error {
	buf := pool.Get(frame.HeaderSize(len(p), false) + len(p))
	err := c.writeFrameLocked(frame.AppendFrame((*buf)[:0], true, 0, op, p, nil), wait)
	pool.Put(buf)
	return err
}

// writeCloseLocked is writeControlLocked for a close frame, whose payload
// is built in place. It has no payload array of its own because a peer's
// close is answered from inside a read call (failRead): a smaller frame
// there keeps the goroutine within the stack that the idle read needed,
// where a larger one made the runtime copy the stack to twice its size at
// every connection's end.
//
// It writes one close frame per connection: after the first (this one's or
// a queued one's, see writeChunk) it returns nil and writes nothing.
func (c *Conn) writeCloseLocked(code uint16, reason string, wait time.Duration) error {
	if c.closeOut {
		return nil
	}
	c.closeOut = true
	buf := pool.Get(2 + frame.MaxControlPayload)
	err := c.writeFrameLocked(frame.AppendCloseFrame((*buf)[:0], code, reason), wait)
	pool.Put(buf)
	return err
}

// writeFrameLocked writes a built control frame, giving the peer at most
// wait to take what the socket does not take at once.
func (c *Conn) writeFrameLocked(f []byte, wait time.Duration) error {
	f, err := c.writeNow(f)
	if err != nil || len(f) == 0 {
		return err
	}
	c.wdl.override(time.Now().Add(wait))
	_, err = c.nc.Write(f)
	return err
}

// writeCopied writes a small frame in one system call, built in a buffer
// borrowed from the pool for the length of the write.
func (c *Conn) writeCopied(op ws.OpCode, p []byte) error {
	buf := pool.Get(frame.HeaderSize(len(p), false) + len(p))
	_, err := c.nc.Write(frame.AppendFrame((*buf)[:0], true, 0, op, p, nil))
	pool.Put(buf)
	return err
}

// deflateState is a connection's side of permessage-deflate.
type deflateState struct {
	on        bool              // negotiated
	takeover  bool              // server context takeover: every compressed message goes through w
	level     int8              // compress/flate's, -2 to 9
	off       atomic.Bool       // SetCompression(false)
	threshold int               // messages from this size up are compressed
	w         *frame.Compressor // made on the first compressed message; guarded by the write lock
}

func (d *deflateState) release() {
	if d.w != nil {
		frame.PutCompressor(d.w)
		d.w = nil
	}
}

// SetCompression turns compression of the messages this connection sends
// on or off; it is on from the start when the handshake agreed on
// permessage-deflate (see Compression), and without that the call does
// nothing. Turn it off around messages that are compressed already
// (images, archives): they go out as they are, uncompressed frames, which
// permessage-deflate always allows. It takes effect for the messages
// written, and broadcast messages queued, after the call. Safe for
// concurrent use.
func (c *Conn) SetCompression(on bool) { c.dz.off.Store(!on) }

// Compression reports whether the connection compresses the messages it
// sends from the threshold up: permessage-deflate was agreed on in the
// handshake and SetCompression has not turned it off. Compressed messages
// from the peer are inflated either way.
func (c *Conn) Compression() bool { return c.dz.on && !c.dz.off.Load() }

// compresses reports whether a message of type op and n bytes goes out
// compressed.
func (c *Conn) compresses(op ws.OpCode, n int) bool {
	return c.dz.on && n >= c.dz.threshold && (op == ws.OpText || op == ws.OpBinary) && !c.dz.off.Load()
}

// deflateLocked builds the compressed frame of p, under the write lock.
// It returns a nil buffer when compressing would not make p shorter (the
// message then goes out as it is); with context takeover it always
// compresses, since the compressor has taken p into its context.
func (c *Conn) deflateLocked(op ws.OpCode, p []byte) (*[]byte, []byte) {
	if c.dz.takeover {
		if c.dz.w == nil {
			c.dz.w = frame.NewCompressor(int(c.dz.level))
		}
		return deflateFrame(c.dz.w, op, p, -1)
	}
	z := frame.GetCompressor(int(c.dz.level))
	buf, f := deflateFrame(z, op, p, len(p)-1)
	frame.PutCompressor(z)
	return buf, f
}

// deflateFrame compresses p with z into a frame with RSV1 set, in a pooled
// buffer with room for the header in front, so the frame goes out in one
// write. With limit >= 0 it gives up (nil) past limit compressed bytes.
func deflateFrame(z *frame.Compressor, op ws.OpCode, p []byte, limit int) (*[]byte, []byte) {
	// Data that does not compress grows by 5 bytes per 64 KiB stored
	// block, and a few at the end.
	buf := pool.Get(frame.MaxHeaderSize + len(p) + len(p)>>13 + 16)
	b, ok := z.Compress((*buf)[:frame.MaxHeaderSize], p, limit)
	if !ok {
		pool.Put(buf)
		return nil, nil
	}
	*buf = b[:0] // b is a new array if Compress outgrew buf: the pool takes that one
	n := len(b) - frame.MaxHeaderSize
	start := frame.MaxHeaderSize - frame.HeaderSize(n, false)
	frame.AppendHeader(b[start:start], true, frame.RSV1, op, n, nil)
	return buf, b[start:]
}
