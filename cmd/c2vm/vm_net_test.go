package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVMNetwork checks the guest network from inside the workload: loopback only with --network
// none; with user networking, eth0 (virtio_net and its failover dependencies loaded), the --dns
// server in /etc/resolv.conf and the -h host name in hostname and /etc/hosts.
func TestVMNetwork(t *testing.T) {
	dir := testBundle(t, "squashfs")
	const probe = `echo links: $(ip -o link | cut -d: -f2 | tr -d ' ' | tr '\n' ' ');` +
		`echo modules: $(for m in virtio_net net_failover failover; do test -d /sys/module/$m && echo $m; done);` +
		`echo host: $(hostname); grep -v -e localhost -e ip6- /etc/hosts; cat /etc/resolv.conf`
	tests := []struct {
		name   string
		args   []string
		stdout string
	}{
		{"none", []string{"--network", "none", "-h", "solo"},
			"links: lo\nmodules: virtio_net net_failover failover\nhost: solo\n"},
		{"user dns hostname", []string{"--dns", "1.1.1.1", "-h", "myhost"},
			"links: lo eth0\nmodules: virtio_net net_failover failover\nhost: myhost\n10.0.2.15\tmyhost\nnameserver 1.1.1.1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // one TCG vCPU per VM: two cores run two
			args := append(append([]string{}, tt.args...), dir, "--", probe)
			stdout, _ := runVM(t, 0, args...)
			if stdout != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tt.stdout)
			}
		})
	}
}

// TestVMPublish serves a page from busybox httpd in the guest and fetches it from the host through
// a published port on 127.0.0.1. A CGI request then tells the workload to exit, so the run ends on
// its own with status 0.
func TestVMPublish(t *testing.T) {
	dir := testBundle(t, "squashfs")
	port := freePort(t)
	const script = `mkdir -p /www/cgi-bin && echo 'page from the guest' > /www/index.html &&` +
		` printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho bye\ntouch /tmp/served\n' > /www/cgi-bin/done &&` +
		` chmod +x /www/cgi-bin/done && httpd -p 8080 -h /www && echo listening &&` +
		` while [ ! -e /tmp/served ]; do sleep 0.1; done; echo served`
	var stdout, stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		args := []string{"c2vm", "run", "--timeout", "120s", "-p", strconv.Itoa(port) + ":8080", dir, "--", script}
		done <- Main(args, strings.NewReader(""), &stdout, &stderr)
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	for _, req := range []struct{ path, want string }{{"/", "page from the guest\n"}, {"/cgi-bin/done", "bye\n"}} {
		body, err := getUntil(t.Context(), base+req.path, 100*time.Second, done)
		var ended *runEnded
		if errors.As(err, &ended) { // Main has returned: its output is safe to read
			t.Fatalf("GET %s: %v\nstdout %q\nstderr %q", req.path, err, stdout.String(), stderr.String())
		}
		if err != nil || body != req.want {
			t.Fatalf("GET %s = %q, %v; want %q", req.path, body, err, req.want)
		}
	}
	select {
	case code := <-done:
		if code != 0 || stdout.String() != "listening\nserved\n" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 0 and listening, served", code, stdout.String(), stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the workload did not exit after the CGI request")
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// getUntil GETs url until it answers 200 or the deadline passes (QEMU accepts and then drops
// connections to the forwarded port until the guest listens). It gives up early when the run ends.
func getUntil(ctx context.Context, url string, wait time.Duration, ended <-chan int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		body, err := get(ctx, client, url)
		if err == nil {
			return body, nil
		}
		select {
		case <-ctx.Done():
			return "", err
		case code := <-ended:
			return "", &runEnded{code: code, last: err}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = &httpStatus{resp.Status}
	}
	return string(b), err
}

type httpStatus struct{ status string }

func (e *httpStatus) Error() string { return "HTTP " + e.status }

type runEnded struct {
	code int
	last error
}

func (e *runEnded) Error() string {
	return "c2vm run ended with status " + strconv.Itoa(e.code) + " before the page was served (last error: " + e.last.Error() + ")"
}
