package faultproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// echo serves a line echo on 127.0.0.1 until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write(append(sc.Bytes(), '\n')); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, wait time.Duration) error {
	if _, err := c.Write([]byte("x\n")); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := bufio.NewReader(c).ReadString('\n')
	return err
}

func TestFaults(t *testing.T) {
	t.Parallel()
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	if err := roundTrip(c, 5*time.Second); err != nil {
		t.Fatalf("forwarding: %v", err)
	}

	// Half-open: the old connection is silent but open; a new one works.
	p.HalfOpen()
	if err := roundTrip(c, 200*time.Millisecond); err == nil {
		t.Fatal("half-open connection still forwards")
	}
	c2 := dial()
	if err := roundTrip(c2, 5*time.Second); err != nil {
		t.Fatalf("new connection after half-open: %v", err)
	}
	p.Heal() // closes the stalled one
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("healed half-open connection not closed")
	}

	// Partition: stalls, then resumes on heal.
	p.Partition()
	if err := roundTrip(c2, 200*time.Millisecond); err == nil {
		t.Fatal("partitioned connection still forwards")
	}
	p.Heal()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(c2).ReadString('\n'); err != nil {
		t.Fatalf("partition healed but the held line did not arrive: %v", err)
	}

	// Drop closes.
	p.Drop()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("dropped connection not closed")
	}
}
