// Command c2vm-init is the c2vm guest init: the kernel runs it as /init (PID 1) from the initrd.
// See package guestinit for what it does and the initrd layout it expects.
//
// See docs/guest-contract.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/guestinit"
	"golang.org/x/sys/unix"
)

func main() {
	if guestinit.IsIdle(os.Args[0]) { // the container's process in shuttle mode
		guestinit.Idle()
	}
	// Small guests (64 MiB): collect early and keep the heap well below the guest's memory.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(24 << 20)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	stop := make(chan string, 4)
	go func() {
		for range sigs {
			stop <- guestinit.StopRequest
		}
	}()

	sys := &guestinit.Linux{}
	guestinit.Boot(context.Background(), sys, guestinit.Options{Stop: stop})
	// Boot returns only when Halt reported success; PID 1 must never exit.
	for {
		sys.Halt(bootcfg.HaltPowerOff)
		time.Sleep(time.Second)
	}
}
