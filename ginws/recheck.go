package ginws

import (
	"sync"
	"sync/atomic"
	"time"
)

// recheck looks again, once pumpDelay has passed, at connections that
// wrote soon after a read call returned and so did not start their control
// pump (see pumpAfterWrite). Most of them answered a request and read
// again at once; but a handler that acknowledges a subscription and then
// only waits (for broadcasts, for Done) reads no more, and without the
// pump the peer's pings and close would go unanswered.
//
// One list and one goroutine per Server, the goroutine running only while
// the list holds connections: a connection is in it at most once (its
// pumpRecheck bit), and a request-response loop puts it there at most once
// per pumpDelay. Nothing is allocated per write, and an idle connection
// holds nothing here.
type recheck struct {
	mu      sync.Mutex
	conns   []*Conn
	spare   []*Conn // the last batch's array, for the next one
	running bool
}

// Bits of Conn.pumpState.
const (
	pumpOn      = 1 << iota // the control pump runs
	pumpRecheck             // the connection is on its Server's recheck list
	pumpWanted              // a write found pumpOn set: the pump looks again as it leaves
)

// add puts c on the list; c has just set its pumpRecheck bit.
func (r *recheck) add(c *Conn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	if !r.running {
		r.running = true
		go r.loop()
	}
	r.mu.Unlock()
}

// loop takes the list every pumpDelay and looks at each connection again,
// until a turn finds the list empty. A connection added just before a turn
// is still within its delay: pumpAfterWrite puts it back for the next one.
func (r *recheck) loop() {
	for {
		time.Sleep(pumpDelay)
		r.mu.Lock()
		batch := r.conns
		if len(batch) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.conns, r.spare = r.spare[:0], nil
		r.mu.Unlock()
		for i, c := range batch {
			c.pumpState.And(^uint32(pumpRecheck))
			if !c.isDone() {
				c.pumpAfterWrite()
			}
			batch[i] = nil
		}
		r.mu.Lock()
		r.spare = batch[:0]
		r.mu.Unlock()
	}
}

// pumpExitHook, when set (by tests only), runs as a pump leaves, before
// its flag is taken down.
var pumpExitHook atomic.Pointer[func()]
