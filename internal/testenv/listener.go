package testenv

import (
	"net"
	"sync/atomic"
)

// CountConnections listens on a free loopback port and counts the connections it accepts
// (closing each at once): an address a test can prove nothing contacted. It stops with the
// test.
func CountConnections(t TB) (address string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().String(), accepted
}
