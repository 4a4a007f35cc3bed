package ginws

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/ginws/ginws/internal/frame"
)

// DefaultSendQueue is how many broadcast messages may wait for one
// connection before it counts as too slow.
const DefaultSendQueue = 1024

// ErrSendQueueFull ends a connection that fell more than its send queue
// behind on broadcasts (it is sent a close frame with 1008).
var ErrSendQueueFull = errors.New("ginws: broadcast queue full: the peer reads too slowly")

// SendQueue sets how many broadcast messages may wait for one connection
// (DefaultSendQueue when n <= 0). Past that, the connection is closed with
// 1008 "too slow" after what is already on its way; the others are not
// affected. A queued message costs a pointer: its bytes are shared by every
// connection it goes to.
func SendQueue(n int) Option {
	return func(c *config) {
		if n <= 0 {
			n = DefaultSendQueue
		}
		c.sendQueue = n
	}
}

// prepared is a frame encoded once, header and payload, shared by every
// connection it is queued to and returned to the pool by the last one.
type prepared struct {
	buf   *[]byte
	b     []byte
	refs  atomic.Int32
	close bool
}

var preparedPool = sync.Pool{New: func() any { return new(prepared) }}

func prepare(op ws.OpCode, p []byte) *prepared {
	pf := preparedPool.Get().(*prepared)
	pf.buf = getBuf(frame.HeaderSize(len(p), false) + len(p))
	pf.b = frame.AppendFrame((*pf.buf)[:0], true, 0, op, p, nil)
	pf.refs.Store(1)
	pf.close = op == ws.OpClose
	return pf
}

func (pf *prepared) unref() {
	if pf.refs.Add(-1) == 0 {
		*pf.buf = pf.b[:0]
		putBuf(pf.buf)
		pf.buf, pf.b = nil, nil
		preparedPool.Put(pf)
	}
}

// Broadcast sends one message to every selected connection and returns
// how many it was queued to. The frame is encoded once and the same bytes
// are written to each connection by a goroutine of that connection that
// runs only while it has messages to send, so Broadcast never waits for a
// peer: a slow one falls behind in its own queue (see SendQueue). Messages
// from one goroutine's Broadcasts reach each connection in order. Safe for
// concurrent use, also while connections come and go.
func (s *Server) Broadcast(to Selector, t MessageType, p []byte) int {
	if t != MessageText && t != MessageBinary {
		return 0
	}
	pf := prepare(ws.OpCode(t), p)
	n := 0
	s.each(to, func(c *Conn) bool {
		if c.enqueue(pf) {
			n++
		}
		return true
	})
	pf.unref()
	return n
}

// sendQueue holds the broadcast frames waiting for one connection. q and
// spare swap, so a connection that keeps broadcasting allocates nothing.
type sendQueue struct {
	mu      sync.Mutex
	q       []*prepared
	spare   []*prepared
	running bool // a flusher goroutine is draining q
	full    bool // overflowed: only the close frame is left to send
	stopped bool // the connection ended: nothing more is queued
	bufs    [][]byte
	wbufs   net.Buffers
	flush   func()      // c.flushQueue, bound once
	drop    *time.Timer // set on overflow
}

func (c *Conn) enqueue(pf *prepared) bool {
	sq := &c.sq
	sq.mu.Lock()
	if sq.stopped || sq.full || c.closeSent.Load() {
		sq.mu.Unlock()
		return false
	}
	if len(sq.q) >= c.cfg.sendQueue {
		c.overflowLocked()
		sq.mu.Unlock()
		return false
	}
	pf.refs.Add(1)
	sq.q = append(sq.q, pf)
	start := !sq.running
	if start {
		sq.running = true
		c.flushWG.Add(1)
	}
	sq.mu.Unlock()
	if start {
		go sq.flush() // a func value made once per connection: no allocation here
	}
	return true
}

// overflowLocked drops what the slow connection has not been sent yet and
// leaves a close frame with 1008 in its place.
func (c *Conn) overflowLocked() {
	sq := &c.sq
	sq.full = true
	c.setCause(ErrSendQueueFull)
	for i, pf := range sq.q {
		pf.unref()
		sq.q[i] = nil
	}
	var payload [frame.MaxControlPayload]byte
	sq.q = append(sq.q[:0], prepare(ws.OpClose, frame.AppendClose(payload[:0], uint16(StatusPolicyViolation), "too slow")))
	c.closeSent.Store(true) // no data after the close frame
	// A flusher is running (the queue was not empty), but it may be stuck
	// behind a write that the peer never takes: bound the wait.
	sq.drop = time.AfterFunc(c.cfg.closeTimeout, func() { c.abort(ErrSendQueueFull) })
}

// flushQueue writes queued frames, many per system call, until the queue
// is empty; then the goroutine ends.
func (c *Conn) flushQueue() {
	defer c.flushWG.Done()
	sq := &c.sq
	for {
		sq.mu.Lock()
		batch := sq.q
		if len(batch) == 0 || sq.stopped {
			sq.running = false
			sq.mu.Unlock()
			c.dropQueued(batch)
			return
		}
		sq.q, sq.spare = sq.spare[:0], nil
		sq.mu.Unlock()

		sentClose, err := c.writeBatch(batch)
		c.dropQueued(batch)
		sq.mu.Lock()
		sq.spare = batch[:0]
		sq.mu.Unlock()
		if err != nil {
			c.abort(err)
		}
		if sentClose {
			c.awaitClose()
		}
	}
}

func (c *Conn) dropQueued(batch []*prepared) {
	for i, pf := range batch {
		pf.unref()
		batch[i] = nil
	}
}

// writeBatch writes the frames of batch in one writev under the write
// lock. A peer that takes none of it for the close timeout is dropped.
func (c *Conn) writeBatch(batch []*prepared) (sentClose bool, err error) {
	// The lock holder is bounded by its own deadline or context; an
	// overflow bounds the wait with the drop timer.
	if err := c.lockWrite(context.Background()); err != nil {
		return false, err
	}
	defer c.unlockWrite()
	if c.isDone() {
		return false, nil
	}
	sq := &c.sq
	sq.bufs = sq.bufs[:0]
	closing := c.closeSent.Load()
	for _, pf := range batch {
		if closing && !pf.close {
			continue // the handler closed first: no data after its close frame
		}
		sq.bufs = append(sq.bufs, pf.b)
		sentClose = sentClose || pf.close
	}
	if len(sq.bufs) == 0 {
		return false, nil
	}
	c.wdl.override(time.Now().Add(c.cfg.closeTimeout))
	sq.wbufs = sq.bufs // WriteTo consumes its slice; bufs keeps the array
	_, err = sq.wbufs.WriteTo(c.nc)
	clear(sq.bufs)
	return sentClose, err
}
