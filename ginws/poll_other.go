//go:build !linux

package ginws

// poller: outside Linux, event-driven connections are read by a goroutine
// each (see Conn.OnMessage).
type poller struct{}

func (*poller) add(*Conn) bool { return false }
func (*poller) remove(*Conn)   {}
func (*poller) serve(c *Conn)  { go c.serveEvents() }
