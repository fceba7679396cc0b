// The Go anchor for compare's `net` group: an echo server with a goroutine per connection
// and a 1 KiB read buffer, as examples/shared/echo.rs's gort server. Prints the address it
// listens on, like the gort and std servers, so the same load generator drives it.
//
//	GOMAXPROCS=1 taskset -c 0 go run benches/go/echo/main.go
//	GORT_MAXPROCS=1 cargo run --release --example echo -- --cpu 1 client ADDR 1000 3
package main

import (
	"fmt"
	"net"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		if err != nil || n == 0 {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func main() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println("listening on", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}
