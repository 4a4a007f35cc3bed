package ginws

import "sync"

// Selector picks the live connections a Broadcast, Range or Count covers:
// every connection of the Server, one route's, or one room's, optionally
// narrowed by a predicate. The zero value selects all.
type Selector struct {
	route, room     string
	byRoute, byRoom bool
	where           func(*Conn) bool
}

// ToAll selects every live connection of the Server.
func ToAll() Selector { return Selector{} }

// ToRoute selects the connections of the route registered at path (the
// full path, group prefix included, as gin's c.FullPath() gives it).
func ToRoute(path string) Selector { return Selector{route: path, byRoute: true} }

// ToRoom selects the connections that joined room (see Conn.Join).
func ToRoom(name string) Selector { return Selector{room: name, byRoom: true} }

// Where narrows the selection to connections for which f returns true. f
// runs while part of the Server's connection set is locked: it must not
// block, nor register, join or leave.
func (sel Selector) Where(f func(*Conn) bool) Selector {
	prev := sel.where
	sel.where = func(c *Conn) bool { return (prev == nil || prev(c)) && f(c) }
	return sel
}

// connSet is a set of live connections.
type connSet map[*Conn]struct{}

// shardCount is how many parts the Server's connection set is split into.
const shardCount = 32

// shard is one part of the Server's live connections, with the route and
// room sets of those connections. A connection stays in one shard for its
// life (Conn.shard); the shards take connections in turn.
type shard struct {
	mu      sync.RWMutex
	conns   connSet
	byRoute map[string]connSet
	rooms   map[string]connSet
	_       [64 - 24 - 3*8]byte // one shard per cache line: no false sharing of the locks
}

// set returns the shard's set that sel covers (nil for a room or route
// with no connection in this shard).
func (sh *shard) set(sel Selector) connSet {
	switch {
	case sel.byRoom:
		return sh.rooms[sel.room]
	case sel.byRoute:
		return sh.byRoute[sel.route]
	}
	return sh.conns
}

func (c *Conn) shard() *shard { return &c.srv.shards[c.shardID] }

// each calls f for every selected connection, with one shard at a time
// locked for reading, and stops when f returns false.
func (s *Server) each(sel Selector, f func(*Conn) bool) {
	for i := range s.shards {
		if !s.shards[i].each(sel, f) {
			return
		}
	}
}

func (sh *shard) each(sel Selector, f func(*Conn) bool) bool {
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	for c := range sh.set(sel) {
		if sel.where != nil && !sel.where(c) {
			continue
		}
		if !f(c) {
			return false
		}
	}
	return true
}

// Range calls f for each selected live connection until f returns false.
// f runs without any lock held, on a snapshot taken at the call.
func (s *Server) Range(sel Selector, f func(*Conn) bool) {
	var snap []*Conn
	s.each(sel, func(c *Conn) bool { snap = append(snap, c); return true })
	for _, c := range snap {
		if !f(c) {
			return
		}
	}
}

// Count returns the number of selected live connections.
func (s *Server) Count(sel Selector) int {
	n := 0
	if sel.where == nil {
		for i := range s.shards {
			sh := &s.shards[i]
			sh.mu.RLock()
			n += len(sh.set(sel))
			sh.mu.RUnlock()
		}
		return n
	}
	s.each(sel, func(*Conn) bool { n++; return true })
	return n
}

// Len returns the number of live connections.
func (s *Server) Len() int { return s.Count(ToAll()) }

// reserve counts an upgrade about to be answered among the handlers that
// Shutdown waits for, unless Shutdown has begun. Like track, it looks at
// closing under a shard's lock, which Shutdown's fence orders.
func (s *Server) reserve() bool {
	sh := &s.shards[s.nextShard.Add(1)%shardCount] // spread, as track does
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.handlers.Add(1)
	return true
}

// track adds a reserved connection to the live set, and reports false
// when Shutdown has begun since: its caller then closes it (closeLate),
// in the set meanwhile, so that Shutdown drops it with the others when
// its context ends first.
func (s *Server) track(c *Conn) bool {
	c.shardID = uint8(s.nextShard.Add(1) % shardCount)
	sh := c.shard()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.conns == nil {
		sh.conns = make(connSet)
		sh.byRoute = make(map[string]connSet)
		sh.rooms = make(map[string]connSet)
	}
	sh.conns[c] = struct{}{}
	addTo(sh.byRoute, c.cfg.route, c)
	return !s.closing.Load() // Shutdown's fence (see there) orders this check
}

// remove drops a connection from every set as soon as it ends, whatever
// ends it.
func (s *Server) remove(c *Conn) {
	sh := c.shard()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	delete(sh.conns, c)
	// A route's set stays when it empties: there is one per route, and
	// making it again would cost two allocations at the next upgrade.
	delete(sh.byRoute[c.cfg.route], c)
	c.attrMu.Lock()
	for _, room := range c.rooms {
		removeFrom(sh.rooms, room, c)
	}
	c.rooms = nil
	c.attrMu.Unlock()
}

func addTo(m map[string]connSet, key string, c *Conn) {
	set := m[key]
	if set == nil {
		set = make(connSet)
		m[key] = set
	}
	set[c] = struct{}{}
}

func removeFrom(m map[string]connSet, key string, c *Conn) {
	if set := m[key]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

// Join adds the connection to room, for ToRoom selections. A connection
// leaves all its rooms when it ends.
func (c *Conn) Join(room string) {
	sh := c.shard()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, live := sh.conns[c]; !live {
		return
	}
	c.attrMu.Lock()
	defer c.attrMu.Unlock()
	for _, r := range c.rooms {
		if r == room {
			return
		}
	}
	c.rooms = append(c.rooms, room)
	addTo(sh.rooms, room, c)
}

// Leave removes the connection from room.
func (c *Conn) Leave(room string) {
	sh := c.shard()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c.attrMu.Lock()
	defer c.attrMu.Unlock()
	for i, r := range c.rooms {
		if r == room {
			c.rooms = append(c.rooms[:i], c.rooms[i+1:]...)
			removeFrom(sh.rooms, room, c)
			return
		}
	}
}

// Route is the full path of the route that accepted the connection ("" for
// the DefaultHandler).
func (c *Conn) Route() string { return c.cfg.route }

// Set attaches a value to the connection under key, for whoever finds the
// connection later (Range, Where). Safe for concurrent use.
func (c *Conn) Set(key string, value any) {
	c.attrMu.Lock()
	defer c.attrMu.Unlock()
	if c.attrs == nil {
		c.attrs = make(map[string]any)
	}
	c.attrs[key] = value
}

// Get returns the value attached under key.
func (c *Conn) Get(key string) (value any, ok bool) {
	c.attrMu.Lock()
	defer c.attrMu.Unlock()
	value, ok = c.attrs[key]
	return value, ok
}
