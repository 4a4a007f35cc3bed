//go:build !linux

package ginws

import "syscall"

// tcpSendProgress: only Linux tells how much of what was written the peer
// has acknowledged; elsewhere the keepalive goes by frames and writes.
func tcpSendProgress(syscall.RawConn) (acked uint64, unsent uint32, ok bool) {
	return 0, 0, false
}

func tcpBytesReceived(syscall.RawConn) (uint64, bool) { return 0, false }
