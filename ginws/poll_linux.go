//go:build linux

package ginws

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller watches the sockets of idle event-driven connections (see
// Conn.OnMessage) with one epoll instance and one goroutine, which exist
// while it watches any. Each socket is registered once, edge-triggered: a
// report starts the connection's goroutine, or marks one already running
// so that it reads once more before it goes idle (Conn.wake), which costs
// no system call per burst of messages beyond the reads. The epoll
// instance is itself watched by the runtime's poller (an epoll descriptor
// is readable while it has events to report), so the goroutine waits like
// any network read, without holding a thread in epoll_wait; the runtime
// keeps watching the sockets too, for the reads and writes of a
// connection being served.
type poller struct {
	mu     sync.Mutex
	file   *os.File // the epoll instance; nil while the poller is not running
	epfd   int
	nextID uint32
	conns  map[uint32]*Conn

	// Workers (see serve), under their own lock, which serve takes for
	// every burst of messages: idle is a stack, the last to go idle on
	// top; reaper ends those idle for workerIdle; running is false while
	// the poller is stopped, and workers that finish then end. The reaper
	// is armed (reaping) while any worker is idle.
	wmu     sync.Mutex
	idle    []*worker
	reaper  *time.Timer
	reaping bool
	running bool

	reg registration // add's RawConn.Control callback, guarded by mu
}

// registration is the poller's EPOLL_CTL_ADD, called through a socket's
// RawConn.Control: a method value bound once, where a closure per call
// would be two allocations per connection.
type registration struct {
	epfd int
	id   uint32
	err  error
	fn   func(fd uintptr)
}

func (r *registration) add(fd uintptr) {
	e := syscall.EpollEvent{Events: epollEvents, Fd: int32(fd), Pad: int32(r.id)}
	r.err = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, int(fd), &e)
}

// epollEvents: readable or hung up, edge-triggered (package syscall spells
// EPOLLET as a negative int; negated, it is the flag's bit 31).
const epollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | -syscall.EPOLLET

// add registers c; false means c is not a socket the poller can watch or
// the registration failed, and a goroutine reads it instead.
func (p *poller) add(c *Conn) bool {
	raw := c.br.RawConn()
	if raw == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.file == nil {
		if err := p.start(); err != nil {
			logError(fmt.Errorf("ginws: poller: %w", err), c, nil)
			return false
		}
	}
	// After 2^32 registrations the ids wrap: one still in use by a
	// long-lived connection is passed over, or its events would go to the
	// newcomer.
	for {
		p.nextID++
		if _, used := p.conns[p.nextID]; p.nextID != 0 && !used {
			break
		}
	}
	ev := c.ev.Load()
	ev.id = p.nextID
	// Inside Control, package net holds the descriptor open, so the call
	// never reaches a number already reused by another socket.
	if p.reg.fn == nil {
		p.reg.fn = p.reg.add
	}
	p.reg.epfd, p.reg.id, p.reg.err = p.epfd, ev.id, nil
	err := raw.Control(p.reg.fn)
	if err != nil || p.reg.err != nil {
		p.stopIfEmpty()
		return false
	}
	p.conns[ev.id] = c
	return true
}

// remove forgets c once it has ended; its socket is closed, which took it
// out of the epoll set.
func (p *poller) remove(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c.ev.Load().id)
	p.stopIfEmpty()
}

// stopIfEmpty closes the epoll instance when no connection is left, which
// ends its goroutine and the workers.
func (p *poller) stopIfEmpty() {
	if len(p.conns) == 0 && p.file != nil {
		_ = p.file.Close()
		p.file = nil
		p.stopWorkers()
	}
}

func (p *poller) start() error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return err
	}
	f := os.NewFile(uintptr(epfd), "ginws-epoll") // non-blocking: watched by the runtime
	raw, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return err
	}
	if p.conns == nil {
		p.conns = make(map[uint32]*Conn)
	}
	p.wmu.Lock()
	p.running = true
	p.wmu.Unlock()
	p.file = f
	p.epfd = epfd
	go p.run(raw)
	return nil
}

// run is the poller's goroutine: it wakes the connections whose sockets
// are readable, and ends when the epoll instance is closed.
func (p *poller) run(raw syscall.RawConn) {
	events := make([]syscall.EpollEvent, 128)
	var n int
	var werr error
	collect := func(fd uintptr) bool {
		for {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			if werr != syscall.EINTR {
				return n > 0 || werr != nil
			}
		}
	}
	var ready []*Conn
	for {
		if err := raw.Read(collect); err != nil {
			return // closed: no connection left
		}
		p.mu.Lock()
		if werr != nil {
			// Not expected (the instance is closed with its last
			// connection, which ends Read above): nothing watches these
			// connections any more, so they are dropped.
			for _, c := range p.conns {
				ready = append(ready, c)
			}
			clear(p.conns)
			p.stopIfEmpty()
		} else {
			for i := range events[:n] {
				if c := p.conns[uint32(events[i].Pad)]; c != nil {
					if events[i].Events&(syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
						// Before the wake: the goroutine that looks next
						// reads to the end instead of trusting a short read.
						c.ev.Load().hup.Store(true)
					}
					ready = append(ready, c)
				}
			}
		}
		p.mu.Unlock()
		for i, c := range ready {
			if werr != nil {
				c.abort(fmt.Errorf("ginws: poller: %w", werr))
			} else {
				c.wake()
			}
			ready[i] = nil
		}
		ready = ready[:0]
		if werr != nil {
			return
		}
	}
}

// serve runs c's goroutine (Conn.serveEvents) on a worker: the one that
// went idle last if any is idle, else a new one. A worker that has served
// waits up to workerIdle for the next connection instead of ending,
// because the runtime starts a goroutine with a small stack and grows it
// by copying: a new goroutine per burst of messages paid for that growth
// every time. The last one to go idle is the first to work again, so its
// stack is the warmest and the ones below it stay idle long enough to be
// ended (see reap).
func (p *poller) serve(c *Conn) {
	p.wmu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.wmu.Unlock()
		w.work <- c // never blocks: an idle worker's channel is empty
		return
	}
	p.wmu.Unlock()
	w := &worker{work: make(chan *Conn, 1)}
	go p.work(w, c)
}

// worker is one of the goroutines that run event-driven connections.
type worker struct {
	work  chan *Conn    // the next connection; nil ends the worker
	since time.Duration // when it went idle (since epoch), guarded by poller.wmu
}

// workerIdle is how long a worker waits for more work before it ends.
const workerIdle = time.Second

func (p *poller) work(w *worker, c *Conn) {
	for c != nil {
		c.serveEvents()
		p.wmu.Lock()
		if !p.running {
			// The poller stopped (its last connection ended, maybe the
			// one just served): nothing will come.
			p.wmu.Unlock()
			return
		}
		w.since = time.Since(epoch)
		p.idle = append(p.idle, w)
		if !p.reaping {
			p.reaping = true
			if p.reaper == nil {
				p.reaper = time.AfterFunc(workerIdle, p.reap)
			} else {
				p.reaper.Reset(workerIdle)
			}
		}
		p.wmu.Unlock()
		c = <-w.work
	}
}

// reap ends the workers that have been idle for workerIdle or more: those
// at the bottom of the stack, which serve hands work from the top.
func (p *poller) reap() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	limit := time.Since(epoch) - workerIdle
	n := 0
	for n < len(p.idle) && p.idle[n].since <= limit {
		p.idle[n].work <- nil
		n++
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)])
	p.reaping = len(p.idle) > 0
	if p.reaping {
		p.reaper.Reset(p.idle[0].since - limit)
	}
}

// stopWorkers ends the idle workers; those still serving end when they
// are done. The caller holds p.mu.
func (p *poller) stopWorkers() {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.running = false
	for i, w := range p.idle {
		w.work <- nil
		p.idle[i] = nil
	}
	p.idle = p.idle[:0]
	if p.reaper != nil {
		p.reaper.Stop()
	}
	p.reaping = false
}
