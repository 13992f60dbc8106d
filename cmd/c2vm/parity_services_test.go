package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/c2vm/c2vm/internal/testkit/dockertest"
)

// The services tier: database and web servers made the way their official images are made
// (testdata/parity/services: one Dockerfile, one apt base, a target per server), each run under
// docker and under c2vm with a named volume at its data directory and -p, driven from the host by
// its real client. Both must become ready, answer queries and a load tool, stop with the status
// docker gives, keep what was written across a stop and a second run, and keep what a client saw
// committed across a SIGKILL (of c2vm; docker kill for docker).
//
// With C2VM_SERVICES_FIGURES=FILE (bench/run.sh) the load runs for a fixed time and each run's
// time to ready and throughput are appended to FILE as "service runtime ready_s figure unit".

// serviceClients are the host tools the tier drives the servers with (Makefile PARITY_PKGS).
var serviceClients = map[string]string{
	"psql": "postgresql-client", "pgbench": "postgresql-client", "mariadb": "mariadb-client", "mysqlslap": "mariadb-client",
	"redis-cli": "redis-tools", "redis-benchmark": "redis-tools", "curl": "curl", "ab": "apache2-utils",
}

// readyWait bounds a start under TCG, first initialisation included.
const readyWait = 240 * time.Second

type service struct {
	name   string // the Dockerfile target
	port   int    // in the container
	volume string // the image's VOLUME, where the named volume goes
	env    []string
	// ready probes once; write commits key; read lists the committed keys, comma-separated;
	// load runs the load tool (for d when benchmarking, else a short fixed amount) and returns a
	// throughput figure and its unit.
	ready func(ctx context.Context, port int) error
	write func(ctx context.Context, port int, key string) error
	read  func(ctx context.Context, port int) (string, error)
	load  func(ctx context.Context, port int, d time.Duration) (float64, string, error)
}

var services = []service{
	{
		name: "redis", port: 6379, volume: "/data",
		ready: func(ctx context.Context, port int) error {
			return want(redis(ctx, port, "PING"))("PONG")
		},
		write: func(ctx context.Context, port int, key string) error {
			_, err := redis(ctx, port, "RPUSH", "kv", key)
			return err
		},
		read: func(ctx context.Context, port int) (string, error) {
			out, err := redis(ctx, port, "LRANGE", "kv", "0", "-1")
			return strings.ReplaceAll(out, "\n", ","), err
		},
		load: func(ctx context.Context, port int, d time.Duration) (float64, string, error) {
			n := "500"
			if d > 0 {
				n = "20000"
			}
			out, err := client(ctx, nil, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-q", "-c", "4", "-n", n, "-t", "get")
			return figure(out, err, `GET: ([0-9.]+) requests per second`, "GET/s (redis-benchmark)")
		},
	},
	{
		name: "nginx", port: 80, volume: "/var/www/html",
		ready: func(ctx context.Context, port int) error {
			return want(client(ctx, nil, "curl", "-fsS", "--max-time", "5", svcURL(port)))("served from the volume")
		},
		load: func(ctx context.Context, port int, d time.Duration) (float64, string, error) {
			n := "200"
			if d > 0 {
				n = "5000"
			}
			out, err := client(ctx, nil, "ab", "-q", "-n", n, "-c", "4", svcURL(port))
			if err == nil && !regexp.MustCompile(`Failed requests:\s+0\n`).MatchString(out) {
				err = fmt.Errorf("ab: failed requests:\n%s", out)
			}
			return figure(out, err, `Requests per second:\s+([0-9.]+)`, "requests/s (ab)")
		},
	},
	{
		name: "postgres", port: 5432, volume: "/var/lib/postgresql/data", env: []string{"POSTGRES_PASSWORD=parity"},
		ready: func(ctx context.Context, port int) error {
			return want(psql(ctx, port, "SELECT 1"))("1")
		},
		write: func(ctx context.Context, port int, key string) error {
			_, err := psql(ctx, port, "CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY); INSERT INTO kv VALUES ('"+key+"')")
			return err
		},
		read: func(ctx context.Context, port int) (string, error) {
			return psql(ctx, port, "SELECT string_agg(k, ',' ORDER BY k) FROM kv")
		},
		load: func(ctx context.Context, port int, d time.Duration) (float64, string, error) {
			script := filepath.Join(os.TempDir(), fmt.Sprintf("c2vm-pgbench-%d.sql", os.Getpid()))
			if err := os.WriteFile(script, []byte("SELECT k FROM kv;\n"), 0o644); err != nil {
				return 0, "", err
			}
			defer os.Remove(script)
			args := append(pgArgs(port), "-n", "-c", "2", "-j", "2", "-f", script)
			args = append(append(args, amount(d, "-T", "-t", 100)...), "postgres")
			out, err := client(ctx, pgEnv, "pgbench", args...)
			return figure(out, err, `tps = ([0-9.]+)`, "tps (select)")
		},
	},
	{
		name: "mariadb", port: 3306, volume: "/var/lib/mysql", env: []string{"MARIADB_ROOT_PASSWORD=parity"},
		ready: func(ctx context.Context, port int) error {
			return want(mariadb(ctx, port, "SELECT 1"))("1")
		},
		write: func(ctx context.Context, port int, key string) error {
			_, err := mariadb(ctx, port, "CREATE DATABASE IF NOT EXISTS p; CREATE TABLE IF NOT EXISTS p.kv (k varchar(16) PRIMARY KEY) ENGINE=InnoDB; INSERT INTO p.kv VALUES ('"+key+"')")
			return err
		},
		read: func(ctx context.Context, port int) (string, error) {
			return mariadb(ctx, port, "SELECT group_concat(k ORDER BY k) FROM p.kv")
		},
		load: func(ctx context.Context, port int, d time.Duration) (float64, string, error) {
			n := 200
			if d > 0 {
				n = 2000
			}
			out, err := client(ctx, nil, "mysqlslap", "--protocol=tcp", "-h", "127.0.0.1", "-P", strconv.Itoa(port), "-uroot", "-pparity",
				"--concurrency=2", "--iterations=1", "--number-of-queries="+strconv.Itoa(n), "--create-schema=slap",
				"--auto-generate-sql", "--auto-generate-sql-load-type=read")
			secs, _, err := figure(out, err, `Average number of seconds to run all queries: ([0-9.]+)`, "")
			if err != nil || secs == 0 {
				return 0, "", err
			}
			return float64(n) / secs, "queries/s (mysqlslap read)", nil
		},
	},
}

func TestParityServices(t *testing.T) {
	if os.Getenv("C2VM_PARITY") != "1" {
		t.Skip("parity services tier: runs with C2VM_PARITY=1 (make test-parity; make test and CI run it)")
	}
	requireVM(t)
	missing := dockertest.Missing()
	for bin, pkg := range serviceClients {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" (Debian package "+pkg+")")
		}
	}
	if len(missing) > 0 {
		t.Fatalf("services tier needs: %s — run `make test-parity`, which installs them", strings.Join(missing, "; "))
	}
	start := time.Now()
	d := dockertest.StartWith(t, dockertest.Options{Bridge: true})
	d.BaseImage(t, dockertest.CacheDir(), "c2vm-parity-base", parityBase)
	work := t.TempDir()
	// The images are built (or loaded from the cache) and converted one by one while the
	// services already built run: each subtest waits for its own bundle.
	bundles := map[string]chan string{}
	for _, s := range services {
		bundles[s.name] = make(chan string, 1)
	}
	go func() {
		for _, s := range services {
			bundles[s.name] <- serviceBundle(t, d, work, s.name)
		}
	}()
	var bench time.Duration
	figures := os.Getenv("C2VM_SERVICES_FIGURES")
	if figures != "" {
		bench = 5 * time.Second
	}
	// Two services at a time (TCG runs a VM on one core), each as soon as its bundle is made;
	// one at a time when benchmarking.
	slots := make(chan struct{}, 2)
	if figures != "" {
		slots = make(chan struct{}, 1)
	}
	var wg sync.WaitGroup
	for _, s := range services {
		wg.Go(func() {
			bundle := <-bundles[s.name]
			slots <- struct{}{}
			defer func() { <-slots }()
			t.Run(s.name, func(t *testing.T) {
				if bundle == "" {
					t.Fatal("no image (see the parent's errors)")
				}
				docker := life(t, s, &dockerRuntime{d: d, image: "parity-svc-" + s.name}, bench)
				vm := life(t, s, &c2vmRuntime{bundle: bundle, volumes: t.TempDir()}, bench)
				compareLives(t, s, docker, vm)
				if figures != "" {
					writeFigures(t, figures, s.name, docker, vm)
				}
			})
		})
	}
	wg.Wait()
	t.Logf("services tier: %s", time.Since(start).Round(time.Second))
}

// serviceBundle makes the image of one services target and its bundle; it returns "" after
// reporting an error (it runs in its own goroutine: no t.Fatal). The saved image is kept in the
// parity cache, keyed by the Dockerfile directory and the base image's inputs: a cached one is
// loaded instead of built (apt runs only when the recipe changes).
func serviceBundle(t *testing.T, d *dockertest.Daemon, work, name string) string {
	begin := time.Now()
	dir := filepath.Join(parityDir, "services")
	key := sha256.New()
	fmt.Fprintln(key, name, strings.Join(parityBase, ","))
	entries, err := os.ReadDir(dir)
	for _, e := range entries {
		b, rerr := os.ReadFile(filepath.Join(dir, e.Name()))
		if rerr != nil {
			err = rerr
		}
		fmt.Fprintf(key, "%s %d\n%s", e.Name(), len(b), b)
	}
	if err != nil {
		t.Errorf("services: %v", err)
		return ""
	}
	image := "parity-svc-" + name
	archive := filepath.Join(dockertest.CacheDir(), fmt.Sprintf("svc-%s-%x.tar", name, key.Sum(nil)[:8]))
	how := "loaded from the cache"
	if _, err := os.Stat(archive); err == nil {
		if _, errs, err := d.Run("", "load", "-q", "-i", archive); err != nil {
			t.Errorf("docker load %s: %v: %s", archive, err, errs)
			return ""
		}
	} else {
		how = "built"
		if _, errs, err := d.Run("", "build", "--network", "host", "-q", "--target", name, "-t", image, dir); err != nil {
			t.Errorf("docker build --target %s: %v\n%s", name, err, clip(errs))
			return ""
		}
		tmp := archive + ".tmp"
		if _, errs, err := d.Run("", "save", "-o", tmp, image); err != nil {
			t.Errorf("docker save %s: %v: %s", image, err, errs)
			return ""
		}
		old, _ := filepath.Glob(filepath.Join(dockertest.CacheDir(), "svc-"+name+"-*.tar"))
		for _, f := range old { // images of earlier recipes
			os.Remove(f)
		}
		if err := os.Rename(tmp, archive); err != nil {
			t.Errorf("services: %v", err)
			return ""
		}
	}
	out := filepath.Join(work, name)
	if code, _, stderr := c2vm(t, "", "convert", "--quiet", "-o", out, "docker-archive:"+archive); code != 0 {
		t.Errorf("convert %s: exit %d: %s", archive, code, stderr)
		return ""
	}
	t.Logf("%s: image %s and converted in %s", name, how, time.Since(begin).Round(time.Second))
	return out
}

// lifeResult is what one runtime showed over a service's three runs.
type lifeResult struct {
	ready       time.Duration // first start, initialisation included
	figure      float64
	unit        string
	stopped     []int  // exit statuses after each stop
	afterStop   string // keys read in the second run
	afterKill   string // keys read in the third run
	firstStdout string
	failed      bool
}

// life runs s three times on one named volume: start, write a, load, stop; start, read, write b,
// SIGKILL; start, read, stop. A service without write (nginx) runs once.
func life(t *testing.T, s service, rt svcRuntime, bench time.Duration) lifeResult {
	t.Helper()
	var r lifeResult
	ctx := t.Context()
	fail := func(format string, args ...any) lifeResult {
		t.Helper()
		t.Errorf("%s: %s", rt, fmt.Sprintf(format, args...))
		r.failed = true
		return r
	}
	begin := time.Now()
	srv, err := rt.start(t, s, "svc-"+s.name)
	if err != nil {
		return fail("start: %v", err)
	}
	if err := waitReady(ctx, s, srv); err != nil {
		srv.kill()
		return fail("first start: not ready: %v\n%s", err, srv.output())
	}
	r.ready = time.Since(begin)
	if s.write != nil {
		if err := s.write(ctx, srv.port, "a"); err != nil {
			srv.kill()
			return fail("write: %v", err)
		}
	}
	if r.figure, r.unit, err = s.load(ctx, srv.port, bench); err != nil {
		srv.kill()
		return fail("load: %v", err)
	}
	r.stopped = append(r.stopped, srv.stop())
	r.firstStdout = srv.stdout()
	if s.write == nil {
		return r
	}

	if srv, err = rt.start(t, s, "svc-"+s.name); err != nil {
		return fail("second start: %v", err)
	}
	if err := waitReady(ctx, s, srv); err != nil {
		srv.kill()
		return fail("second start: not ready: %v\n%s", err, srv.output())
	}
	if r.afterStop, err = s.read(ctx, srv.port); err != nil {
		srv.kill()
		return fail("read after a stop: %v", err)
	}
	if err := s.write(ctx, srv.port, "b"); err != nil {
		srv.kill()
		return fail("write: %v", err)
	}
	srv.kill()

	if srv, err = rt.start(t, s, "svc-"+s.name); err != nil {
		return fail("third start: %v", err)
	}
	if err := waitReady(ctx, s, srv); err != nil {
		srv.kill()
		return fail("start after SIGKILL: not ready: %v\n%s", err, srv.output())
	}
	if r.afterKill, err = s.read(ctx, srv.port); err != nil {
		srv.kill()
		return fail("read after SIGKILL: %v", err)
	}
	r.stopped = append(r.stopped, srv.stop())
	return r
}

func compareLives(t *testing.T, s service, docker, vm lifeResult) {
	t.Helper()
	if docker.failed || vm.failed {
		return
	}
	if fmt.Sprint(docker.stopped) != fmt.Sprint(vm.stopped) {
		t.Errorf("exit statuses after stops: docker %v, c2vm %v", docker.stopped, vm.stopped)
	}
	if s.write != nil {
		for _, r := range []struct {
			name string
			l    lifeResult
		}{{"docker", docker}, {"c2vm", vm}} {
			if r.l.afterStop != "a" || r.l.afterKill != "a,b" {
				t.Errorf("%s: keys after a stop %q (want a), after SIGKILL %q (want a,b)", r.name, r.l.afterStop, r.l.afterKill)
			}
		}
	}
	if s.name == "nginx" { // the access log reaches the container's stdout through the symlink
		for _, r := range []struct {
			name string
			l    lifeResult
		}{{"docker", docker}, {"c2vm", vm}} {
			if !strings.Contains(r.l.firstStdout, `"GET / HTTP/1.1" 200`) {
				t.Errorf("%s: no access log line on stdout: %q", r.name, clip(r.l.firstStdout))
			}
		}
	}
	t.Logf("ready in %s (docker %s); %.0f %s (docker %.0f)", vm.ready.Round(100*time.Millisecond), docker.ready.Round(100*time.Millisecond), vm.figure, vm.unit, docker.figure)
}

// waitReady polls the service's client until it answers, the deadline passes or the run ends.
func waitReady(ctx context.Context, s service, srv *svcServer) error {
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	for {
		err := s.ready(ctx, srv.port)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer within %v: %w", readyWait, err)
		case <-srv.ended:
			return fmt.Errorf("ended with status %d: %w", srv.code, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// svcRuntime starts a service: docker run or c2vm run, with the named volume and a published port.
type svcRuntime interface {
	start(t *testing.T, s service, volume string) (*svcServer, error)
	String() string
}

// svcServer is a started service: its host port, and how to stop or kill it.
type svcServer struct {
	port   int
	ended  chan struct{} // closed when the run has ended (code set)
	code   int
	stop   func() int // the stop docker does (SIGTERM to c2vm); the exit status
	kill   func()     // SIGKILL
	stdout func() string
	output func() string // stdout and stderr, for failures
}

type dockerRuntime struct {
	d     *dockertest.Daemon
	image string
}

func (r *dockerRuntime) String() string { return "docker" }

func (r *dockerRuntime) start(t *testing.T, s service, volume string) (*svcServer, error) {
	args := []string{"run", "-d", "-v", volume + ":" + s.volume, "-p", fmt.Sprintf("127.0.0.1::%d", s.port)}
	for _, e := range s.env {
		args = append(args, "-e", e)
	}
	out, errs, err := r.d.Run("", append(args, r.image)...)
	if err != nil {
		return nil, fmt.Errorf("docker run: %v: %s", err, errs)
	}
	id := strings.TrimSpace(out)
	t.Cleanup(func() { r.d.Run("", "rm", "-f", id) })
	hostPort, _, err := r.d.Run("", "port", id, fmt.Sprintf("%d/tcp", s.port))
	_, p, _ := strings.Cut(strings.TrimSpace(hostPort), ":")
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil {
		return nil, fmt.Errorf("docker port %s: %q, %v", id, hostPort, err)
	}
	logs := func(stderr bool) string {
		o, e, _ := r.d.Run("", "logs", id)
		if stderr {
			return o + e
		}
		return o
	}
	srv := &svcServer{port: port, ended: make(chan struct{})}
	srv.stop = func() int {
		r.d.Run("", "stop", "-t", "60", id)
		code, _, _ := r.d.Run("", "inspect", "-f", "{{.State.ExitCode}}", id)
		n, _ := strconv.Atoi(strings.TrimSpace(code))
		return n
	}
	srv.kill = func() { r.d.Run("", "kill", id) }
	srv.stdout = func() string { return logs(false) }
	srv.output = func() string { return logs(true) }
	return srv, nil
}

type c2vmRuntime struct {
	bundle  string
	volumes string // C2VM_VOLUMES
}

func (r *c2vmRuntime) String() string { return "c2vm" }

func (r *c2vmRuntime) start(t *testing.T, s service, volume string) (*svcServer, error) {
	port := freePort(t)
	args := []string{"run", "--timeout", "600", "-m", "384", "-v", volume + ":" + s.volume, "-p", fmt.Sprintf("127.0.0.1:%d:%d", port, s.port)}
	for _, e := range s.env {
		args = append(args, "-e", e)
	}
	cmd := exec.Command(filepath.Join(os.Getenv("C2VM_LIBDIR"), "c2vm"), append(args, r.bundle)...)
	cmd.Env = append(os.Environ(), "C2VM_VOLUMES="+r.volumes)
	var mu sync.Mutex
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &lockedWriter{&mu, &stdout}, &lockedWriter{&mu, &stderr}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	srv := &svcServer{port: port, ended: make(chan struct{})}
	go func() { cmd.Wait(); srv.code = cmd.ProcessState.ExitCode(); close(srv.ended) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-srv.ended })
	wait := func() int {
		select {
		case <-srv.ended:
		case <-time.After(120 * time.Second):
			cmd.Process.Kill()
			<-srv.ended
		}
		return srv.code
	}
	srv.stop = func() int { cmd.Process.Signal(syscall.SIGTERM); return wait() }
	srv.kill = func() { cmd.Process.Kill(); <-srv.ended }
	srv.stdout = func() string { mu.Lock(); defer mu.Unlock(); return stdout.String() }
	srv.output = func() string { mu.Lock(); defer mu.Unlock(); return stdout.String() + stderr.String() }
	return srv, nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// client runs a client tool with a deadline and returns its trimmed stdout; a failure carries
// its stderr.
func client(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

var pgEnv = []string{"PGPASSWORD=parity", "PGCONNECT_TIMEOUT=5"}

func pgArgs(port int) []string {
	return []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres"}
}

func psql(ctx context.Context, port int, sql string) (string, error) {
	return client(ctx, pgEnv, "psql", append(pgArgs(port), "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atqc", sql)...)
}

func mariadb(ctx context.Context, port int, sql string) (string, error) {
	return client(ctx, nil, "mariadb", "--protocol=tcp", "-h", "127.0.0.1", "-P", strconv.Itoa(port), "-uroot", "-pparity",
		"--connect-timeout=5", "-N", "-B", "-e", sql)
}

func redis(ctx context.Context, port int, args ...string) (string, error) {
	out, err := client(ctx, nil, "redis-cli", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)...)
	if err == nil && (strings.HasPrefix(out, "ERR") || strings.HasPrefix(out, "LOADING")) {
		err = errors.New("redis-cli: " + out)
	}
	return out, err
}

func svcURL(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/", port) }

// want turns a client's answer into an error unless it is exactly w.
func want(out string, err error) func(w string) error {
	return func(w string) error {
		if err != nil {
			return err
		}
		if out != w {
			return fmt.Errorf("answered %q, want %q", clip(out), w)
		}
		return nil
	}
}

// amount is a load tool's run length: for d when benchmarking, else n transactions.
func amount(d time.Duration, timeFlag, countFlag string, n int) []string {
	if d > 0 {
		return []string{timeFlag, strconv.Itoa(int(d.Seconds()))}
	}
	return []string{countFlag, strconv.Itoa(n)}
}

// figure reads a load tool's throughput from its output.
func figure(out string, err error, pattern, unit string) (float64, string, error) {
	if err != nil {
		return 0, "", err
	}
	m := regexp.MustCompile(pattern).FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0, "", fmt.Errorf("no %q in %q", pattern, clip(out))
	}
	f, err := strconv.ParseFloat(m[len(m)-1][1], 64)
	return f, unit, err
}

func writeFigures(t *testing.T, file, name string, docker, vm lifeResult) {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	for _, r := range []struct {
		rt string
		l  lifeResult
	}{{"c2vm", vm}, {"docker", docker}} {
		fmt.Fprintf(f, "%s %s %.1f %.0f %s\n", name, r.rt, r.l.ready.Seconds(), r.l.figure, r.l.unit)
	}
}
