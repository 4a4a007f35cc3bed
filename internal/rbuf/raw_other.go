//go:build !unix

package rbuf

import (
	"net"
	"syscall"
)

// rawConn: outside Unix every connection is read through its own Read.
func rawConn(net.Conn) syscall.RawConn { return nil }

func readFD(uintptr, []byte) (int, error) { return 0, syscall.EINVAL }
