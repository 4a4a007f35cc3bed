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
	"github.com/ginws/ginws/internal/pool"
)

// DefaultSendQueue is how many broadcast messages may wait for one
// connection before it counts as too slow.
const DefaultSendQueue = 1024

// DefaultSendQueueBytes is how many bytes of broadcast frames may wait for
// one connection before it counts as too slow: as many as the largest
// message a connection takes by default (DefaultMaxPayload), so that a
// burst of messages of a few MiB to a peer on a slow link fits.
const DefaultSendQueueBytes = 16 << 20

// ErrSendQueueFull ends a connection that fell more than its send queue
// behind on broadcasts (it is sent a close frame with 1008).
var ErrSendQueueFull = errors.New("ginws: broadcast queue full: the peer reads too slowly")

// SendQueue sets how many broadcast messages may wait for one connection
// (DefaultSendQueue when n <= 0). Past that, or past SendQueueBytes, the
// connection is closed with 1008 "too slow" after what is already on its
// way; the others are not affected. A queued message costs a pointer: its
// bytes are shared by every connection it goes to, and kept as long as
// one of them has it waiting.
func SendQueue(n int) Option {
	return func(c *config) {
		if n <= 0 {
			n = DefaultSendQueue
		}
		c.sendQueue = n
	}
}

// SendQueueBytes sets how many bytes of broadcast frames may wait for one
// connection (DefaultSendQueueBytes when n <= 0), the frame being written
// included: what a peer that stops reading can keep in memory, with
// SendQueue. A message larger than n is still sent to a connection with
// nothing waiting. Leave room for the bursts the application sends: a
// peer that reads steadily but more slowly than a burst arrives is closed
// too.
func SendQueueBytes(n int) Option {
	return func(c *config) {
		if n <= 0 {
			n = DefaultSendQueueBytes
		}
		c.sendQueueBytes = n
	}
}

// prepared is a frame encoded once, header and payload, shared by every
// connection it is queued to and returned to the pool by the last one.
// Its compressed versions, one per compression level, are built by
// Broadcast when a connection first needs one, and shared the same way.
type prepared struct {
	buf   *[]byte
	b     []byte
	hdr   int // b[hdr:] is the payload
	op    ws.OpCode
	refs  atomic.Int32
	close bool
	z     []deflated
}

// deflated is a prepared frame compressed at one level; buf is nil when
// compression did not make it shorter, and b is then the plain frame.
type deflated struct {
	level int
	buf   *[]byte
	b     []byte
}

var preparedPool = sync.Pool{New: func() any { return new(prepared) }}

func prepare(op ws.OpCode, p []byte) *prepared {
	pf := preparedPool.Get().(*prepared)
	pf.hdr = frame.HeaderSize(len(p), false)
	pf.buf = pool.Get(pf.hdr + len(p))
	pf.b = frame.AppendFrame((*pf.buf)[:0], true, 0, op, p, nil)
	pf.op = op
	pf.refs.Store(1)
	pf.close = op == ws.OpClose
	return pf
}

func (pf *prepared) unref() {
	if pf.refs.Add(-1) == 0 {
		*pf.buf = pf.b[:0]
		pool.Put(pf.buf)
		pf.buf, pf.b = nil, nil
		for _, d := range pf.z {
			if d.buf != nil {
				pool.Put(d.buf)
			}
		}
		clear(pf.z)
		pf.z = pf.z[:0]
		preparedPool.Put(pf)
	}
}

// deflated returns the frame compressed at level, compressing it on first
// use. Only Broadcast, before it lets go of pf, calls it.
func (pf *prepared) deflated(level int) []byte {
	for _, d := range pf.z {
		if d.level == level {
			return d.b
		}
	}
	p := pf.b[pf.hdr:]
	z := frame.GetCompressor(level)
	buf, b := deflateFrame(z, pf.op, p, len(p)-1)
	frame.PutCompressor(z)
	if buf == nil {
		b = pf.b
	}
	pf.z = append(pf.z, deflated{level: level, buf: buf, b: b})
	return b
}

// broadcastFrame is the frame of pf that c is sent: the plain one, a
// compressed one shared by the connections of its level, or nil for a
// connection with server context takeover, which compresses the payload
// with its own compressor when it writes it.
func (c *Conn) broadcastFrame(pf *prepared) []byte {
	if !c.compresses(pf.op, len(pf.b)-pf.hdr) {
		return pf.b
	}
	if c.dz.takeover {
		return nil
	}
	return pf.deflated(int(c.dz.level))
}

// Broadcast sends one message to every selected connection and returns
// how many it was queued to. The frame is encoded once and the same bytes
// are written to each connection by a goroutine of that connection that
// runs only while it has messages to send, so Broadcast never waits for a
// peer: a slow one falls behind in its own queue (see SendQueue). Messages
// from one goroutine's Broadcasts reach each connection in order. Safe for
// concurrent use, also while connections come and go.
//
// With permessage-deflate (Compression), a message at or above a
// connection's threshold is compressed once per compression level, by
// Broadcast, and those bytes are shared by all the connections of that
// level: each message is compressed on its own, so every connection can
// take it, whatever it has received before. Connections with server
// context takeover (DeflateOptions.ServerContextTakeover) are the
// exception: each compresses the message with its own compressor when its
// turn to write comes. Connections that turned compression off with
// SetCompression get the plain frame.
func (s *Server) Broadcast(to Selector, t MessageType, p []byte) int {
	if t != MessageText && t != MessageBinary {
		return 0
	}
	pf := prepare(ws.OpCode(t), p)
	n := 0
	s.each(to, func(c *Conn) bool {
		if c.enqueue(pf, c.broadcastFrame(pf)) {
			n++
		}
		return true
	})
	pf.unref()
	return n
}

// queued is one broadcast frame waiting for a connection: pf, and the
// bytes of it to write (nil: pf's payload compressed by the connection's
// own compressor).
type queued struct {
	pf *prepared
	b  []byte
}

// sendQueue holds the broadcast frames waiting for one connection, in a
// list of chunks taken from pools: the first chunk of an empty queue is
// small (most connections have a frame or two waiting), the next ones
// hold writevMax frames each. The flusher writes one chunk per writev and
// gives it back, so an idle connection holds no chunk, whatever burst it
// was sent, and a steady flow of broadcasts allocates nothing.
type sendQueue struct {
	mu         sync.Mutex
	head, tail *chunk      // oldest first; nil when nothing waits
	n          int         // frames waiting
	bytes      int         // their encoded size
	flying     int         // encoded size of the chunk being written
	running    bool        // a flusher goroutine is draining the queue
	full       bool        // overflowed: only the close frame is left to send
	stopped    bool        // the connection ended: nothing more is queued
	owned      []*[]byte   // buffers of frames compressed while writing a chunk
	flush      func()      // c.flushQueue, bound once
	drop       *time.Timer // set on overflow
}

// chunk is a run of queued frames, and room for the bytes of each to
// write in one writev.
type chunk struct {
	frames []queued // cap smallChunk or writevMax
	bufs   [][]byte
	wbufs  net.Buffers // what WriteTo consumes (a method on the pointer)
	next   *chunk
}

// writevMax is the most frames in a chunk, and so in one writev. The
// runtime keeps the array of iovecs it builds for a socket's largest
// writev as long as the socket is open (16 bytes a frame, up to 1,024
// frames), which a larger batch would leave on an idle connection.
const writevMax = 64

// smallChunk is the size of the first chunk of an empty queue.
const smallChunk = 4

var (
	smallChunks = sync.Pool{New: func() any { return newChunk(smallChunk) }}
	largeChunks = sync.Pool{New: func() any { return newChunk(writevMax) }}
)

func newChunk(n int) *chunk {
	return &chunk{frames: make([]queued, 0, n), bufs: make([][]byte, 0, n)}
}

// push appends e; sq.mu is held.
func (sq *sendQueue) push(e queued) {
	t := sq.tail
	if t == nil || len(t.frames) == cap(t.frames) {
		var ch *chunk
		if t == nil {
			ch = smallChunks.Get().(*chunk)
			sq.head = ch
		} else {
			ch = largeChunks.Get().(*chunk)
			t.next = ch
		}
		sq.tail, t = ch, ch
	}
	t.frames = append(t.frames, e)
	sq.n++
	sq.bytes += len(e.pf.b)
}

// pop takes the oldest chunk off the queue; sq.mu is held.
func (sq *sendQueue) pop() *chunk {
	ch := sq.head
	if ch != nil {
		sq.head, ch.next = ch.next, nil
		if sq.head == nil {
			sq.tail = nil
		}
		sq.n -= len(ch.frames)
		for _, e := range ch.frames {
			sq.bytes -= len(e.pf.b)
			sq.flying += len(e.pf.b)
		}
	}
	return ch
}

// takeAll detaches every waiting chunk, oldest first; sq.mu is held.
func (sq *sendQueue) takeAll() *chunk {
	ch := sq.head
	sq.head, sq.tail, sq.n, sq.bytes = nil, nil, 0, 0
	return ch
}

// release drops the chunk's references to its frames and gives it back.
func (ch *chunk) release() {
	for i, e := range ch.frames {
		e.pf.unref()
		ch.frames[i] = queued{}
	}
	ch.frames = ch.frames[:0]
	clear(ch.bufs)
	ch.bufs, ch.wbufs = ch.bufs[:0], nil
	if cap(ch.frames) == writevMax {
		largeChunks.Put(ch)
	} else {
		smallChunks.Put(ch)
	}
}

// releaseAll releases the chunks from ch on.
func releaseAll(ch *chunk) {
	for ch != nil {
		next := ch.next
		ch.next = nil
		ch.release()
		ch = next
	}
}

// stoppedQueue stands in for the send queue of a connection that ended
// before any broadcast reached it.
var stoppedQueue = &sendQueue{stopped: true}

// queue returns c's send queue, allocating it on first use: most
// connections are never sent a broadcast, and the queue is 80 bytes.
func (c *Conn) queue() *sendQueue {
	if sq := c.sq.Load(); sq != nil {
		return sq
	}
	sq := &sendQueue{flush: c.flushQueue}
	if c.sq.CompareAndSwap(nil, sq) {
		return sq
	}
	return c.sq.Load()
}

// stopQueue makes sure nothing more is queued once the connection ends.
func (c *Conn) stopQueue() {
	if c.sq.CompareAndSwap(nil, stoppedQueue) {
		return
	}
	sq := c.sq.Load()
	sq.mu.Lock()
	sq.stopped = true
	if sq.drop != nil {
		sq.drop.Stop()
	}
	sq.mu.Unlock()
}

func (c *Conn) enqueue(pf *prepared, b []byte) bool {
	sq := c.queue()
	sq.mu.Lock()
	if sq.stopped || sq.full || c.closeSent.Load() {
		sq.mu.Unlock()
		return false
	}
	// Bytes count until they are written: the chunk being written holds
	// its frames too.
	waiting := sq.bytes + sq.flying
	if sq.n >= c.cfg.sendQueue || waiting > 0 && waiting+len(pf.b) > c.cfg.sendQueueBytes {
		c.overflowLocked()
		sq.mu.Unlock()
		return false
	}
	pf.refs.Add(1)
	sq.push(queued{pf, b})
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
	sq := c.sq.Load()
	sq.full = true
	releaseAll(sq.takeAll())
	if !c.closeSent.CompareAndSwap(false, true) {
		return // a close frame is on its way already: there is no second one
	}
	c.setCause(ErrSendQueueFull)
	var payload [frame.MaxControlPayload]byte
	pf := prepare(ws.OpClose, frame.AppendClose(payload[:0], uint16(StatusPolicyViolation), "too slow"))
	sq.push(queued{pf, pf.b})
	// A flusher is running (the queue was not empty), but it may be stuck
	// behind a write that the peer never takes: bound the wait.
	sq.drop = time.AfterFunc(c.cfg.closeTimeout, func() { c.abort(ErrSendQueueFull) })
}

// flushQueue writes the queued frames, a chunk per system call, until the
// queue is empty; then the goroutine ends.
func (c *Conn) flushQueue() {
	defer c.flushWG.Done()
	sq := c.sq.Load()
	for {
		sq.mu.Lock()
		sq.flying = 0 // the last chunk is written (or given up)
		if sq.head == nil || sq.stopped {
			sq.running = false
			rest := sq.takeAll()
			sq.mu.Unlock()
			releaseAll(rest)
			return
		}
		ch := sq.pop()
		sq.mu.Unlock()

		sentClose, err := c.writeChunk(ch)
		ch.release()
		if err != nil {
			c.abort(err)
		}
		if sentClose {
			c.awaitClose()
		} else if err == nil {
			// A handler fed only by broadcasts writes too: its peer's
			// pings and close are read for it, as after WriteMessage.
			c.pumpAfterWrite()
		}
	}
}

// writeChunk writes the frames of ch in one writev under the write lock.
// A peer that takes none of their bytes for the close timeout is dropped.
func (c *Conn) writeChunk(ch *chunk) (sentClose bool, err error) {
	// The lock holder is bounded by its own deadline or context; an
	// overflow bounds the wait with the drop timer.
	if err := c.lockWrite(context.Background()); err != nil {
		return false, err
	}
	defer c.unlockWrite()
	if c.isDone() {
		return false, nil
	}
	sq := c.sq.Load()
	closing := c.closeSent.Load()
	for _, e := range ch.frames {
		if closing && !e.pf.close {
			continue // the handler closed first: no data after its close frame
		}
		if e.pf.close {
			if c.closeOut {
				continue // the peer's close was answered first: one close frame
			}
			c.closeOut = true
		}
		b := e.b
		if b == nil { // server context takeover: compressed here, in write order
			var buf *[]byte
			if buf, b = c.deflateLocked(e.pf.op, e.pf.b[e.pf.hdr:]); buf != nil {
				sq.owned = append(sq.owned, buf)
			} else {
				b = e.pf.b
			}
		}
		ch.bufs = append(ch.bufs, b)
		sentClose = sentClose || e.pf.close
	}
	if len(ch.bufs) == 0 {
		return false, nil
	}
	ch.wbufs = ch.bufs // WriteTo consumes its slice; bufs keeps the array
	c.wseq.Add(1)
	for {
		// The close timeout bounds a wait in which the peer takes nothing,
		// not the whole chunk: up to SendQueueBytes may go to a peer on a
		// slow link that reads steadily.
		c.wdl.override(time.Now().Add(c.cfg.closeTimeout))
		var n int64
		n, err = ch.wbufs.WriteTo(c.nc)
		if err == nil || n == 0 || !isTimeout(err) || c.isDone() {
			break
		}
	}
	c.wseq.Add(1)
	for i, buf := range sq.owned {
		pool.Put(buf)
		sq.owned[i] = nil
	}
	sq.owned = sq.owned[:0]
	return sentClose, err
}
