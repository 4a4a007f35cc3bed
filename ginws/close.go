package ginws

import (
	"errors"
	"fmt"
	"time"

	"github.com/ginws/ginws/internal/frame"
)

var (
	errCloseTimeout = errors.New("ginws: peer did not answer the close frame in time")
	errCloseBlocked = errors.New("ginws: the close frame waited for the write lock past the close timeout")
)

// Close closes the connection with 1000 (io.Closer). See CloseWith.
func (c *Conn) Close() error { return c.CloseWith(StatusNormalClosure, "") }

// CloseWith starts the close handshake with code and reason (cut to fit a
// control frame; bytes that are not UTF-8 are sent as U+FFFD), waits for the peer's close frame no longer than the
// close timeout, then closes the TCP connection. Reads in progress end
// with the peer's *CloseError; later writes fail with that *CloseError once
// the peer has answered, or with an error matching ErrClosed before. Calling it
// again, or after the peer closed, waits for the same ending and returns
// nil. With StreamText, the first call returns an error matching
// ErrNotUTF8 when a Write left the start of a rune waiting for its end:
// those bytes are dropped.
func (c *Conn) CloseWith(code StatusCode, reason string) error {
	if code < 0 || code > 0xFFFF || !frame.ValidCloseCode(uint16(code)) {
		return fmt.Errorf("ginws: %d is not a close code that may be sent", code)
	}
	if !c.closeSent.CompareAndSwap(false, true) {
		c.awaitClose() // reads the answer itself if the first closer could not
		return c.dropHeld()
	}
	if err := c.sendClose(uint16(code), reason); err == nil {
		c.awaitClose()
	} // else the connection is gone; nothing is left to close
	return c.dropHeld()
}

// dropHeld reports the bytes of an incomplete rune that the text byte
// stream still held when it closed.
func (c *Conn) dropHeld() error {
	if st := c.st.Load(); st != nil {
		if n := st.DropHeld(); n > 0 {
			return fmt.Errorf("%w: %d bytes of an unfinished character dropped at close", ErrNotUTF8, n)
		}
	}
	return nil
}

// goAway is Shutdown's close: 1001, answered like any close.
func (c *Conn) goAway() { _ = c.CloseWith(StatusGoingAway, "server is shutting down") }

// awaitClose waits for the peer's close frame after ours. When nobody is
// reading, it reads (and discards data) itself.
func (c *Conn) awaitClose() {
	if c.lingering.Load() && !c.isDone() {
		// Failed (failProtocol): the close frame is out and the write side
		// shut; drain what the peer still sends until it closes, as finish
		// would, so the TCP close is not a reset.
		c.rmu.Lock()
		c.lingerClose(c.endErr(), c.cfg.closeTimeout)
		c.rmu.Unlock()
		return
	}
	if c.reading.Load() == 0 && c.rmu.TryLock() {
		c.rdl.override(time.Now().Add(c.cfg.closeTimeout))
		c.discardUntilClose()
		c.rmu.Unlock()
		c.abort(errCloseTimeout)
		return
	}
	c.waitDone()
}

// discardUntilClose reads, after our close frame, up to the peer's,
// dropping data the peer sent before it saw ours. The caller holds the
// read side and has bounded the wait (a deadline, or a timer in waitDone).
func (c *Conn) discardUntilClose() {
	c.pending = false
	for c.rerr == nil && !c.isDone() {
		if _, err := c.fr.NextMessage(); err != nil {
			if isType[*frame.Error](err) || isType[*CloseError](err) {
				_ = c.failRead(err)
				c.lingerFailed()
			}
			return
		}
	}
}

// lingerFailed drains, as finish would, a connection that a reader of
// the peer's answer to our close has just failed (failProtocol): nobody
// else will, the closer waiting only for the end, and closing the socket
// under the peer's unread bytes would reset it.
func (c *Conn) lingerFailed() {
	if c.lingering.Load() && !c.isDone() {
		c.lingerClose(c.endErr(), c.cfg.closeTimeout)
	}
}

// waitDone waits for the connection to end, dropping it when the peer
// takes longer than the close timeout.
func (c *Conn) waitDone() {
	if c.isDone() {
		return // the usual case when the peer closed first: no timer
	}
	t := time.NewTimer(c.cfg.closeTimeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.abort(errCloseTimeout)
	}
}
