// Command go-server is the example of a static Go HTTP server shipped FROM scratch as a VM bundle
// (see the Dockerfile). It answers every request with one line saying who serves it; -selftest
// starts the server, fetches / from it once, prints the answer and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	selftest := flag.Bool("selftest", false, "serve one request from this process, print the answer and exit")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(hello), ReadHeaderTimeout: 10 * time.Second}
	if *selftest {
		go srv.Serve(ln)
		os.Exit(fetch(fmt.Sprintf("http://127.0.0.1:%d/", ln.Addr().(*net.TCPAddr).Port)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	drained := make(chan struct{})
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background()) // waits for requests in flight
		close(drained)
	}()
	fmt.Fprintf(os.Stderr, "go-server listening on %s\n", ln.Addr())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-drained
	fmt.Fprintln(os.Stderr, "go-server stopped")
}

func hello(w http.ResponseWriter, r *http.Request) {
	wd, _ := os.Getwd()
	fmt.Fprintf(w, "go-server %s: %s %s as uid %d gid %d in %s, GREETING=%s\n",
		runtime.GOARCH, r.Method, r.URL.Path, os.Getuid(), os.Getgid(), wd, os.Getenv("GREETING"))
}

func fetch(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	io.Copy(os.Stdout, resp.Body)
	return 0
}
