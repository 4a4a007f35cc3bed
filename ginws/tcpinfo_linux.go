package ginws

import (
	"encoding/binary"
	"syscall"
	"unsafe"
)

// Offsets in Linux's struct tcp_info (include/uapi/linux/tcp.h) of the
// two fields the keepalive reads; both are there since Linux 4.6.
const (
	tcpiBytesAcked   = 120 // __u64 tcpi_bytes_acked
	tcpiBytesRecv    = 128 // __u64 tcpi_bytes_received
	tcpiNotsentBytes = 144 // __u32 tcpi_notsent_bytes
	tcpInfoLen       = tcpiNotsentBytes + 4
)

// tcpBytesReceived reports how many bytes the peer has sent on the TCP
// socket behind raw since the connection began, read or not.
func tcpBytesReceived(raw syscall.RawConn) (uint64, bool) {
	if raw == nil {
		return 0, false
	}
	var info [tcpInfoLen]byte
	n := uint32(len(info))
	var errno syscall.Errno
	err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd,
			syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil || errno != 0 || n < tcpInfoLen {
		return 0, false
	}
	return binary.NativeEndian.Uint64(info[tcpiBytesRecv:]), true
}

// tcpSendProgress reports, for the TCP socket behind raw, how many bytes
// of ours the peer has acknowledged since the connection began and how
// many wait in the send queue, not yet sent (held back by the peer's
// receive window or by congestion control). ok is false when the socket
// or the kernel cannot tell (raw is nil, getsockopt fails, a kernel older
// than 4.6 returns a shorter struct).
func tcpSendProgress(raw syscall.RawConn) (acked uint64, unsent uint32, ok bool) {
	if raw == nil {
		return 0, 0, false
	}
	var info [tcpInfoLen]byte
	n := uint32(len(info))
	var errno syscall.Errno
	err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd,
			syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil || errno != 0 || n < tcpInfoLen {
		return 0, 0, false
	}
	return binary.NativeEndian.Uint64(info[tcpiBytesAcked:]),
		binary.NativeEndian.Uint32(info[tcpiNotsentBytes:]), true
}
