package ginws

import (
	"context"
	"time"

	"github.com/gobwas/ws"

	"github.com/ginws/ginws/internal/frame"
)

// tick is how often the keepalive timer fires: the ping interval, or half
// the idle timeout when only that is set.
func (c *Conn) tick() time.Duration {
	if c.cfg.pingInterval > 0 {
		if c.cfg.idleTimeout > 0 {
			return min(c.cfg.pingInterval, c.cfg.idleTimeout/2)
		}
		return c.cfg.pingInterval
	}
	return c.cfg.idleTimeout / 2
}

// epoch is where the connections' clock starts (keepalive, last read): a
// time.Duration since then is monotonic, 16 bytes smaller than a
// time.Time, and one clock read where time.Now takes two. It is an hour
// before the package starts, so that zero, the clock of what never
// happened, is long ago.
var epoch = time.Now().Add(-time.Hour)

func (c *Conn) startKeepalive() {
	d := c.tick()
	if d <= 0 {
		return
	}
	c.kaMu.Lock()
	defer c.kaMu.Unlock()
	c.kaSeen = time.Since(epoch)
	c.kaTimer = time.AfterFunc(d, c.keepalive)
}

// stopKeepalive waits for a tick in progress, so no timer work outlives
// the connection.
func (c *Conn) stopKeepalive() {
	c.kaMu.Lock()
	defer c.kaMu.Unlock()
	c.kaStopped = true
	if c.kaTimer != nil {
		c.kaTimer.Stop()
	}
}

func (c *Conn) keepalive() {
	c.kaMu.Lock()
	defer c.kaMu.Unlock()
	if c.kaStopped || c.isDone() {
		return
	}
	now := time.Since(epoch)
	n, w := c.fr.Progress(), c.wseq.Load()
	switch {
	case n != c.kaSeenIn || (w&1 == 1 && w == c.kaWseq):
		// Bytes of the peer's frames were taken in (a peer sending one long
		// frame cannot answer pings until it ends), or one write has been
		// on the wire since the last tick: a peer busy taking a long
		// message cannot answer either, and that write is bounded by its
		// own deadline or context.
		c.kaSeenIn, c.kaSeen = n, now
	case c.cfg.idleTimeout > 0 && c.drainingBacklog(w):
		c.kaSeen = now
	case c.cfg.idleTimeout > 0 && c.receivingBehindPending():
		c.kaSeen = now
	}
	c.kaWseq = w
	if c.cfg.idleTimeout > 0 && now-c.kaSeen > c.cfg.idleTimeout {
		c.dropIdle()
		return
	}
	if c.cfg.pingInterval > 0 {
		c.ping(c.tick()) // starts the pump when the handler is not reading
	} else {
		c.startPump()
	}
	c.kaTimer.Reset(c.tick())
}

// ping sends the keepalive's ping, waiting for the write lock and for the
// socket no longer than d. It is bounded by d, not by the handler's write
// deadline: that one bounds the handler's write calls, and left armed
// after them (set before each write, as is usual), it would make every
// ping fail once it had passed and drop a healthy connection.
func (c *Conn) ping(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	err := c.lockWrite(ctx)
	cancel()
	if err != nil {
		return
	}
	if c.closeSent.Load() || c.isDone() {
		c.unlockWrite()
		return
	}
	c.wseq.Add(1) // odd while a write is on the wire, as in writeLocked
	err = c.writePingLocked(d)
	c.wseq.Add(1)
	c.unlockWrite()
	if err != nil {
		c.abort(err)
		return
	}
	c.pumpAfterWrite()
}

// pingFrame is the keepalive's ping, without payload; writes only read it.
var pingFrame = frame.AppendFrame(nil, true, 0, ws.OpPing, nil, nil)

// writePingLocked writes the keepalive's ping, giving the peer at most d to
// take what the socket does not take at once. With IdleTimeout set, a ping
// for which the socket has no room at all is not sent: the send buffer is
// full of what the peer has yet to take in, and the ping would only queue
// behind it. Waiting for room (Linux wakes a blocked writer only once about
// a third of the buffer is free) would drop, one tick later, a live peer
// taking that backlog in slowly, which IdleTimeout counts as alive
// (drainingBacklog); a hung peer takes in nothing and IdleTimeout drops
// it. Without IdleTimeout, a ping that cannot go out within d is what
// drops a peer that vanished.
func (c *Conn) writePingLocked(d time.Duration) error {
	if c.cfg.idleTimeout <= 0 {
		return c.writeFrameLocked(pingFrame, d)
	}
	f, full, err := writeNow(c.br.RawConn(), pingFrame)
	if err != nil || len(f) == 0 || full && len(f) == len(pingFrame) {
		return err
	}
	// Part of the frame is out and the rest must follow, or the socket
	// was not tried (a passed deadline, not a plain socket).
	c.wdl.override(time.Now().Add(d))
	_, err = c.nc.Write(f)
	return err
}

// drainingBacklog reports whether the peer is still taking in what was
// written before: bytes of ours that waited in the send queue at the last
// check (held back by the peer's receive window) and that the peer has
// acknowledged since. Its pongs queue behind those bytes, so without this
// a live peer on a slow link, draining a message that left our hands long
// ago, would be dropped. Acknowledgements of what was sent at once do not
// count: the kernel of a peer whose application hangs still acknowledges
// them (our pings, say), but only until its receive buffer is full.
//
// It costs one getsockopt(2) per tick without a frame, none when nothing
// was written since the send queue was last seen empty; outside Linux or
// a plain TCP socket it reports false.
func (c *Conn) drainingBacklog(w uint64) bool {
	if !c.kaBacklog && w == c.kaAckWseq && c.kaAcked != 0 {
		// A check was made, nothing waited then and nothing was written
		// since: no backlog can have formed.
		return false
	}
	acked, unsent, ok := tcpSendProgress(c.br.RawConn())
	if !ok {
		return false
	}
	progress := c.kaBacklog && acked > c.kaAcked
	c.kaAcked, c.kaAckWseq, c.kaBacklog = acked, w, unsent > 0
	return progress
}

// dropIdle ends a connection whose peer went silent: a close frame with
// 1001 if the socket takes it without waiting, then the TCP close.
func (c *Conn) dropIdle() {
	cause := &CloseError{Code: StatusAbnormalClosure, Reason: "idle timeout", cause: ErrIdleTimeout}
	c.setCause(cause)
	if c.closeSent.CompareAndSwap(false, true) {
		if c.tryLockWrite() {
			_ = c.writeCloseLocked(uint16(StatusGoingAway), "idle timeout", time.Second)
			c.wl.unlock()
		}
	}
	c.abort(cause)
}

// bytesCounter is a connection without a socket to ask that counts the
// bytes its peer has sent, read or not: ginwstest's in-memory one, so that
// the keepalive treats a test's client as it treats one over TCP.
type bytesCounter interface{ BytesReceived() uint64 }

// receivingBehindPending reports whether bytes from the peer arrived since
// the last check while a message waits for the handler: the pump stops at
// a message the handler has not taken, and at one the handler has begun
// (NextReader, Read) and not read to its end, and what follows it (the
// peer's pongs) stays unread, so the frame reader's progress cannot show
// it. It costs one getsockopt(2) per tick only while such a message
// waits; outside Linux or a plain TCP socket it reports false.
func (c *Conn) receivingBehindPending() bool {
	if !c.rmu.TryLock() {
		return false // a reader is at work: its progress shows
	}
	pending := c.pending || c.fr.Open()
	c.rmu.Unlock()
	if !pending {
		return false
	}
	n, ok := tcpBytesReceived(c.br.RawConn())
	if !ok {
		bc, is := c.nc.(bytesCounter)
		if !is {
			return false
		}
		n = bc.BytesReceived()
	}
	arrived := n != c.kaRecv
	c.kaRecv = n
	return arrived
}
