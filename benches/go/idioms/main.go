// The Go anchors for compare's `wg` and `chan` groups (issue #12): the same workloads, sized
// the same, timed the same way (best of 3, nanoseconds per operation).
//
//	GOMAXPROCS=2 go run benches/go/idioms/main.go
package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

func best(f func() float64) float64 {
	b := f()
	for i := 0; i < 2; i++ {
		if x := f(); x < b {
			b = x
		}
	}
	return b
}

// From a goroutine: wg.Add(1) and a goroutine per task, Done in each, one Wait.
func wgFanout(n int) float64 {
	out := make(chan float64)
	go func() {
		var wg sync.WaitGroup
		var sum atomic.Uint64
		t := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				sum.Add(uint64(i))
				wg.Done()
			}(i)
		}
		wg.Wait()
		d := time.Since(t)
		if sum.Load() != uint64(n)*uint64(n-1)/2 {
			panic("lost a task")
		}
		out <- float64(d.Nanoseconds()) / float64(n)
	}()
	return <-out
}

// `tasks` goroutines each lock a shared Mutex `iters` times.
func mutex(tasks, iters int) float64 {
	var m sync.Mutex
	c := 0
	var wg sync.WaitGroup
	t := time.Now()
	for i := 0; i < tasks; i++ {
		wg.Add(1)
		go func() {
			for j := 0; j < iters; j++ {
				m.Lock()
				c++
				m.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	d := time.Since(t)
	if c != tasks*iters {
		panic("lost an increment")
	}
	return float64(d.Nanoseconds()) / float64(tasks*iters)
}

// 4 producers and 4 consumers over one channel buffered to 64.
func chanThroughput(msgs int) float64 {
	ch := make(chan uint64, 64)
	var got atomic.Uint64
	var pw, cw sync.WaitGroup
	t := time.Now()
	for p := 0; p < 4; p++ {
		pw.Add(1)
		go func() {
			for i := 0; i < msgs/4; i++ {
				ch <- uint64(i)
			}
			pw.Done()
		}()
	}
	for c := 0; c < 4; c++ {
		cw.Add(1)
		go func() {
			n := uint64(0)
			for range ch {
				n++
			}
			got.Add(n)
			cw.Done()
		}()
	}
	pw.Wait()
	close(ch)
	cw.Wait()
	d := time.Since(t)
	if got.Load() != uint64(msgs/4*4) {
		panic("lost a message")
	}
	return float64(d.Nanoseconds()) / float64(got.Load())
}

func main() {
	fmt.Printf("wg fan-out, per task: %.1f ns\n", best(func() float64 { return wgFanout(1_000_000) }))
	fmt.Printf("contended mutex, lock+unlock: %.1f ns\n", best(func() float64 { return mutex(100, 10_000) }))
	fmt.Printf("channel 4 x 4 bounded(64): %.1f ns\n", best(func() float64 { return chanThroughput(2_000_000) }))
}
