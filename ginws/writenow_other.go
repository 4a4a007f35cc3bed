//go:build !unix

package ginws

// writeNow: outside Unix every frame is written through the connection's
// own Write, with a deadline.
func (c *Conn) writeNow(f []byte) ([]byte, error) { return f, nil }
