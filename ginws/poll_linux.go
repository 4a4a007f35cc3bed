//go:build linux

package ginws

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// poller watches the sockets of idle event-driven connections (see
// Conn.OnMessage) with one epoll instance and one goroutine, which exist
// while it watches any. Each socket is registered one-shot: a report
// starts the connection's goroutine and disarms the socket until that
// goroutine has read everything and arms it again. The epoll instance is
// itself watched by the runtime's poller (an epoll descriptor is readable
// while it has events to report), so the goroutine waits like any network
// read, without holding a thread in epoll_wait; the runtime keeps watching
// the sockets too, for the reads and writes of a connection being served.
type poller struct {
	mu     sync.Mutex
	file   *os.File // the epoll instance; nil while the poller is not running
	epfd   atomic.Int32
	nextID uint32
	conns  map[uint32]*Conn
}

const pollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// pollCtl is one connection's epoll_ctl call, made once so re-arming
// allocates nothing. Its fields are atomic: once a re-arming call has
// reached the kernel, the socket may be reported and served by another
// goroutine (which may re-arm it in turn) before the call has returned.
type pollCtl struct {
	p     *poller
	id    uint32
	op    atomic.Int32
	errno atomic.Uintptr // of the last call, 0 for success
	f     func(fd uintptr)
}

func (pc *pollCtl) run(fd uintptr) {
	e := syscall.EpollEvent{Events: pollEvents, Fd: int32(fd), Pad: int32(pc.id)}
	var errno uintptr
	if err := syscall.EpollCtl(int(pc.p.epfd.Load()), int(pc.op.Load()), int(fd), &e); err != nil {
		errno = uintptr(syscall.EINVAL)
		if en, ok := err.(syscall.Errno); ok && en != 0 {
			errno = uintptr(en)
		}
	}
	pc.errno.Store(errno)
}

// add registers c; false means c is not a socket the poller can watch or
// the registration failed, and a goroutine reads it instead.
func (p *poller) add(c *Conn) bool {
	if c.br.RawConn() == nil {
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
	p.nextID++
	if p.nextID == 0 {
		p.nextID = 1
	}
	ev := c.ev.Load()
	ev.ctl = &pollCtl{p: p, id: p.nextID}
	ev.ctl.f = ev.ctl.run
	if !p.ctl(c, syscall.EPOLL_CTL_ADD) {
		p.stopIfEmpty()
		return false
	}
	p.conns[ev.ctl.id] = c
	return true
}

// rearm watches c's socket again after its goroutine found it empty.
func (p *poller) rearm(c *Conn) bool { return p.ctl(c, syscall.EPOLL_CTL_MOD) }

// ctl runs epoll_ctl on c's socket while package net holds the descriptor
// open, so it never reaches a number already reused by another socket.
func (p *poller) ctl(c *Conn, op int) bool {
	pc := c.ev.Load().ctl
	pc.op.Store(int32(op))
	err := c.br.RawConn().Control(pc.f)
	return err == nil && pc.errno.Load() == 0
}

// remove forgets c once it has ended; its socket is closed, which took it
// out of the epoll set.
func (p *poller) remove(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c.ev.Load().ctl.id)
	p.stopIfEmpty()
}

// stopIfEmpty closes the epoll instance when no connection is left, which
// ends the goroutine.
func (p *poller) stopIfEmpty() {
	if len(p.conns) == 0 && p.file != nil {
		_ = p.file.Close()
		p.file = nil
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
	p.file = f
	p.epfd.Store(int32(epfd))
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
			// connection): whatever it watched is woken and read by
			// goroutines of its own from then on.
			for _, c := range p.conns {
				ready = append(ready, c)
			}
			clear(p.conns)
			p.stopIfEmpty()
		} else {
			for i := range events[:n] {
				if c := p.conns[uint32(events[i].Pad)]; c != nil {
					ready = append(ready, c)
				}
			}
		}
		p.mu.Unlock()
		for i, c := range ready {
			c.wake()
			ready[i] = nil
		}
		ready = ready[:0]
		if werr != nil {
			return
		}
	}
}
