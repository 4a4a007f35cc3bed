//go:build !unix

package ginws

import "syscall"

// writeNow: outside Unix every frame is written through the connection's
// own Write, with a deadline.
func (c *Conn) writeNow(f []byte) ([]byte, error) { return f, nil }

func writeNow(_ syscall.RawConn, f []byte) ([]byte, bool, error) { return f, false, nil }
