//go:build unix

package rbuf

import (
	"net"
	"syscall"
)

// rawConn is the descriptor of the sockets whose Read is a plain read(2):
// TCP and Unix connections of package net. Wrappers are read through their
// own Read, whatever they expose.
func rawConn(nc net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

func readFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}
