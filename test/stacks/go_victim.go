// Goroutines (on their small, growable stacks) call a probed function from
// deep recursion. Built with cgo, so the process has glibc. Protocol as
// stack_victim.c: "ready", a line, the work, "calls=N result=R", a line.
package main

import "C"

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
)

var sink int64

// nosplit: no stack-growth prologue, which would run the function's first
// instruction (and a probe on it) a second time after growing the stack.
//
//go:noinline
//go:nosplit
func probed(x int64) int64 {
	atomic.AddInt64(&sink, x)
	return x
}

//go:noinline
func deep(n int, x int64) int64 {
	var pad [64]int64
	pad[n%64] = x
	if n > 0 {
		return deep(n-1, x) + pad[n%64] - x
	}
	return probed(x)
}

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	in := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	in.ReadString('\n')
	var wg sync.WaitGroup
	var calls int64
	var mu sync.Mutex
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				deep(40+i%20, int64(g*n+i))
				mu.Lock()
				calls++
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	fmt.Printf("calls=%d result=%d\n", calls, sink)
	in.ReadString('\n')
}
