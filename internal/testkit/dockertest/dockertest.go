// Package dockertest runs a real docker engine for tests — Debian's docker.io, started by the test
// on its own data root and socket, without networking, stopped when the test ends — and builds the
// offline base images the parity Dockerfiles start from (mmdebstrap | docker import, cached under
// the user cache dir by their inputs).
//
// See docs/testing.md (the parity tier).
package dockertest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c2vm/c2vm/internal/cachedir"
)

// Client is Debian docker.io's client, which has BuildKit built in (a docker >= 23 client first
// on PATH needs the buildx plugin for builds).
const Client = "/usr/bin/docker"

// Daemon is a running dockerd.
type Daemon struct {
	Sock string
	dir  string
}

// Missing lists what a docker test needs and this machine lacks.
func Missing() []string {
	var m []string
	for _, bin := range []string{"/usr/sbin/dockerd", Client} {
		if _, err := os.Stat(bin); err != nil {
			m = append(m, bin+" (Debian package docker.io)")
		}
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		m = append(m, "mmdebstrap (Debian package mmdebstrap)")
	}
	if os.Geteuid() != 0 {
		m = append(m, "root (dockerd)")
	}
	return m
}

// Options are how Start runs dockerd; the zero value is a daemon without networking.
type Options struct {
	// Bridge gives containers a bridge of their own (made by Start, removed when the test ends)
	// so that docker run -p publishes ports on the host, through docker's userland proxy. The
	// host's firewall is left alone: no iptables rules, no NAT, so containers reach nothing but
	// the host. Builds still need --network host.
	Bridge bool
}

// Start starts dockerd on a fresh data root, without networking, and stops it when the test ends.
func Start(t testing.TB) *Daemon { return StartWith(t, Options{}) }

// StartWith starts dockerd with opts on a fresh data root and stops it when the test ends.
func StartWith(t testing.TB, opts Options) *Daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "c2vm-docker-") // short: the socket path has a 108-byte limit
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Sock: filepath.Join(dir, "sock"), dir: dir}
	log, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	bridge := "none"
	if opts.Bridge {
		bridge = makeBridge(t)
	}
	cmd := exec.Command("/usr/sbin/dockerd", "--data-root", filepath.Join(dir, "root"), "--exec-root", filepath.Join(dir, "exec"),
		"-H", "unix://"+d.Sock, "--pidfile", filepath.Join(dir, "pid"),
		"--iptables=false", "--ip-masq=false", "--ip-forward=false", "--bridge="+bridge)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		log.Close()
		exec.Command("umount", "-R", filepath.Join(dir, "root")).Run()
		os.RemoveAll(dir)
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, _, err := d.Run("", "version"); err == nil {
			return d
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("dockerd did not answer within 60s:\n%s", tail(string(b), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// makeBridge adds a bridge for one daemon, named and addressed by this process's id (so that
// concurrent test processes do not share one), and removes it when the test ends.
func makeBridge(t testing.TB) string {
	t.Helper()
	pid := os.Getpid()
	name := fmt.Sprintf("c2vmt%d", pid%1000000)
	cidr := fmt.Sprintf("10.%d.%d.1/24", 200+pid%50, pid/50%250)
	for _, args := range [][]string{
		{"link", "add", name, "type", "bridge"},
		{"addr", "add", cidr, "dev", name},
		{"link", "set", name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "link", "del", name).Run()
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	return name
}

// Run runs the docker client against the daemon and returns its stdout and stderr; err is
// *exec.ExitError when the command ran and failed.
func (d *Daemon) Run(stdin string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(Client, append([]string{"-H", "unix://" + d.Sock}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// Must runs the docker client and fails the test when it fails.
func (d *Daemon) Must(t testing.TB, args ...string) string {
	t.Helper()
	out, errs, err := d.Run("", args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, tail(errs, 4000))
	}
	return out
}

// BaseImage imports the Debian bookworm minbase (with the packages in include) as tag, building
// its tarball with mmdebstrap once per set of inputs (cached in cacheDir).
func (d *Daemon) BaseImage(t testing.TB, cacheDir, tag string, include []string) {
	t.Helper()
	args := []string{"--variant=minbase", "--include=" + strings.Join(include, ","), "bookworm", "-"}
	sum := sha256.Sum256([]byte(strings.Join(args, "\x00")))
	tarball := filepath.Join(cacheDir, "debian-"+hex.EncodeToString(sum[:8])+".tar")
	if _, err := os.Stat(tarball); err != nil {
		if err := mmdebstrap(args, tarball); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(Client, "-H", "unix://"+d.Sock, "import", "-", tag)
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import %s: %v\n%s", tag, err, out)
	}
}

// mmdebstrap writes a root filesystem tarball, atomically.
func mmdebstrap(args []string, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".mmdebstrap-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	var errb bytes.Buffer
	cmd := exec.Command("mmdebstrap", append([]string{"--quiet"}, args...)...)
	cmd.Stdout, cmd.Stderr = tmp, &errb
	if err := cmd.Run(); err != nil {
		tmp.Close()
		return fmt.Errorf("mmdebstrap %s: %v\n%s", strings.Join(args, " "), err, tail(errb.String(), 2000))
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// CacheDir is the parity cache: $XDG_CACHE_HOME/c2vm/parity, else ~/.cache/c2vm/parity (under
// the temporary directory when neither is known).
func CacheDir() string {
	d, err := cachedir.Default()
	if err != nil {
		d = cachedir.Dir(filepath.Join(os.TempDir(), "c2vm"))
	}
	return d.Parity()
}

// Save writes image as a docker-archive at path.
func (d *Daemon) Save(t testing.TB, image, path string) {
	t.Helper()
	d.Must(t, "save", "-o", path, image)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
