package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/c2vm/c2vm/internal/testkit/dockertest"
)

// The parity tier: real Dockerfiles built by a real docker engine, `docker run` against `c2vm run`
// on the same image, stdout and stderr bytes and exit status compared, and a file listing compared
// across the three rootfs formats. Differences fail unless testdata/parity/allow.txt lists them
// with a reason; an allow-list entry that no longer matches a difference fails too.
//
// It runs with C2VM_PARITY=1 (`make test-parity`, which `make test` and CI run, installs docker.io
// and mmdebstrap); plain `go test` skips it.

const parityDir = "testdata/parity"

// parityBase is what the parity Dockerfiles start FROM: Debian bookworm minbase plus these.
var parityBase = []string{"ca-certificates", "python3-minimal", "libcap2-bin"}

type parityCase struct {
	name  string
	image string   // a directory of testdata/parity
	flags []string // run flags both tools take the same way
	args  []string // the command, after the image
	stdin string
}

var parityCases = []parityCase{
	{name: "default-cmd", image: "fidelity"},
	{name: "env-and-workdir", image: "fidelity", flags: []string{"-e", "EXTRA=1", "-w", "/tmp"}, args: []string{"sh", "-c", "pwd; env | LC_ALL=C sort"}},
	{name: "env-unset", image: "fidelity", flags: []string{"-e", "GREETING", "-e", "C2VM_PARITY_NOT_SET"}, args: []string{"sh", "-c", `echo "[${GREETING-unset}] [${C2VM_PARITY_NOT_SET-unset}]"`}},
	{name: "env-comma", image: "fidelity", flags: []string{"-e", "LIST=a,b,c"}, args: []string{"sh", "-c", `echo "$LIST"`}},
	{name: "env-file", image: "fidelity", flags: []string{"--env-file", filepath.Join(parityDir, "env.list")}, args: []string{"sh", "-c",
		`echo "[$LEADING] [$TRAILING] [$QUOTED] [${C2VM_PARITY-unset}] [${C2VM_NOT_SET_ANYWHERE-unset}] [${EMPTY-unset}]"`}},
	{name: "user-groups", image: "fidelity", flags: []string{"-u", "app"}, args: []string{"id"}},
	{name: "setuid", image: "fidelity", flags: []string{"-u", "app"}, args: []string{"/usr/local/bin/suid-id", "-u"}},
	{name: "file-capability", image: "fidelity", flags: []string{"-u", "app"}, args: []string{"/usr/local/bin/py-raw", "-c",
		"import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print('raw socket ok')"}},
	{name: "low-port-non-root", image: "fidelity", flags: []string{"-u", "app"}, args: []string{"python3", "-c",
		"import socket; s = socket.socket(); s.bind(('127.0.0.1', 80)); print('bound port 80')"}},
	{name: "sysctls", image: "fidelity", args: []string{"cat", "/proc/sys/net/ipv4/ping_group_range", "/proc/sys/net/ipv4/ip_unprivileged_port_start"}},
	{name: "memory-error", image: "fidelity", args: []string{"python3", "-c", "bytearray(1 << 40)"}},
	{name: "exit-status", image: "fidelity", args: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}},
	{name: "killed", image: "fidelity", args: []string{"sh", "-c", `sh -c 'kill -9 $$'; echo status $?`}},
	{name: "stdin", image: "fidelity", flags: []string{"-i"}, args: []string{"sh", "-c", "wc -c; echo done"}, stdin: strings.Repeat("0123456789abcdef", 4096)},
	{name: "big-output", image: "fidelity", args: []string{"sh", "-c", "yes 0123456789 | head -c 20000000"}},
	{name: "ca-certificates", image: "fidelity", args: []string{"sh", "-c", "readlink /etc/ssl/certs/NetLock_Arany_=Class_Gold=_Főtanúsítvány.pem && head -1 /etc/ssl/certs/NetLock_Arany_=Class_Gold=_Főtanúsítvány.pem"}},
	{name: "environment", image: "fidelity", args: []string{"sh", "-c", "readlink /etc/mtab; test -d /sys/fs/cgroup && echo cgroup; cat /run/app/state; ulimit -n"}},
	{name: "volume-content", image: "fidelity", args: []string{"ls", "/data"}},
	{name: "missing-interpreter", image: "fidelity", args: []string{"/noshell.sh"}},
	{name: "command-not-found", image: "fidelity", args: []string{"/nonexistent"}},
	{name: "capabilities", image: "fidelity", args: []string{"grep", "^Cap", "/proc/self/status"}},
	{name: "cap-add-drop", image: "fidelity", flags: []string{"--cap-drop", "net_raw", "--cap-drop", "CAP_CHOWN", "--cap-add", "SYS_PTRACE"}, args: []string{"grep", "^Cap", "/proc/self/status"}},
	{name: "read-only-tmpfs", image: "fidelity", flags: []string{"--read-only", "--tmpfs", "/scratch"}, args: []string{"sh", "-c",
		"touch /x || echo read-only; touch /scratch/y && echo tmpfs ok; echo more > /data/new && cat /data/seed /data/new"}},
	{name: "torture-default", image: "torture"},
	{name: "scratch-default", image: "scratch"},
	{name: "scratch-args-user", image: "scratch", flags: []string{"-u", "1234:5678", "-e", "MODE=override"}, args: []string{"fail", "x"}},
	{name: "entrypoint-default", image: "entrypoint"},
	{name: "entrypoint-args", image: "entrypoint", args: []string{"echo", "replaced", "cmd"}},
	{name: "entrypoint-override", image: "entrypoint", flags: []string{"--entrypoint", "id"}, args: []string{"-un"}},
}

// parityListing prints every path of the container's root filesystem (not /proc, /sys, /dev,
// nor other mounts' contents) with type, owner, mode, size (not for directories) and link target,
// then the file capabilities.
const parityListing = `find / -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type d -printf '%p d %U:%G %m\n' -o -printf '%p %y %U:%G %m %s %l\n' | LC_ALL=C sort; getcap -r /usr /etc /bin /sbin 2>/dev/null | LC_ALL=C sort`

func TestParity(t *testing.T) {
	if os.Getenv("C2VM_PARITY") != "1" {
		t.Skip("parity tier: runs with C2VM_PARITY=1 (make test-parity; make test and CI run it)")
	}
	requireVM(t)
	if m := dockertest.Missing(); len(m) > 0 {
		t.Fatalf("parity test needs: %s — run `make test-parity`, which installs them", strings.Join(m, "; "))
	}
	allow := readAllowList(t)
	d := dockertest.Start(t)
	d.BaseImage(t, dockertest.CacheDir(), "c2vm-parity-base", parityBase)
	work := t.TempDir()
	bundles := map[string]string{}
	for _, img := range []string{"fidelity", "scratch", "entrypoint", "torture"} {
		bundles[img] = buildAndConvert(t, d, work, img, "squashfs")
	}
	for _, tc := range parityCases {
		t.Run(tc.name, func(t *testing.T) {
			want := dockerRun(d, tc)
			got := c2vmRun(t, bundles[tc.image], tc)
			compareRuns(t, allow, tc.name, want, got)
		})
	}
	for _, img := range []string{"fidelity", "torture"} {
		t.Run("listing-"+img, func(t *testing.T) {
			lc := parityCase{name: "listing", image: img, args: []string{"sh", "-c", parityListing}}
			want := dockerRun(d, lc)
			if want.code != 0 {
				t.Fatalf("docker listing: exit %d: %s", want.code, want.stderr)
			}
			for _, format := range []string{"squashfs", "erofs", "initrd"} {
				dir := bundles[img]
				if format != "squashfs" {
					// --memory 1024: the initrd format unpacks the image's ~200 MB into the guest's memory.
					dir = convertArchive(t, filepath.Join(work, img+".tar"), filepath.Join(work, img+"-"+format), format, "--memory", "1024")
				}
				got := c2vmRun(t, dir, lc)
				if got.code != 0 {
					t.Fatalf("%s listing: exit %d: %s", format, got.code, got.stderr)
				}
				compareListings(t, allow, format, want.stdout, got.stdout)
			}
		})
	}
	t.Run("docker-build-route", func(t *testing.T) { dockerBuildRoute(t, d, work) })
	allow.checkUsed(t)
}

// dockerBuildRoute builds a Go image from the host's toolchain, the converter image from the
// repo's own Dockerfile, then each example project (examples/*: a user's Dockerfile whose last
// stages turn its app stage into a VM bundle with RUN --mount=type=bind,from=app ... rootfs:/rootfs),
// exports the bundle with --output type=local, boots it and compares it with docker run of the
// app stage.
func dockerBuildRoute(t *testing.T, d *dockertest.Daemon, work string) {
	goImage(t, d, work)
	start := time.Now()
	d.Must(t, "build", "--network", "host", "-q", "--target", "converter", "-t", "c2vm-converter",
		"--build-arg", "GO_IMAGE=c2vm-parity-go", "--build-arg", "DEBIAN_IMAGE=c2vm-parity-base", filepath.Join("..", ".."))
	t.Logf("converter image from the repo's Dockerfile: %s", time.Since(start).Round(time.Second))
	for _, ex := range []struct {
		name string
		args []string
	}{{"vm-stage", nil}, {"python-service", nil}, {"go-server", []string{"-selftest"}}} {
		t.Run(ex.name, func(t *testing.T) {
			ctxDir := filepath.Join(work, "ctx-"+ex.name)
			if err := os.CopyFS(ctxDir, os.DirFS(filepath.Join("..", "..", "examples", ex.name))); err != nil {
				t.Fatal(err)
			}
			args := []string{"build", "--network", "host", "-q", "--build-arg", "BASE=c2vm-parity-base",
				"--build-arg", "PYTHON_IMAGE=c2vm-parity-base", "--build-arg", "GO_IMAGE=c2vm-parity-go", "--build-arg", "C2VM=c2vm-converter"}
			d.Must(t, append(args, "--target", "app", "-t", "parity-"+ex.name, ctxDir)...)
			out := filepath.Join(work, ex.name+".bundle")
			start := time.Now()
			d.Must(t, append(args, "--target", "bundle", "--output", "type=local,dest="+out, ctxDir)...)
			t.Logf("bundle stage: %s", time.Since(start).Round(time.Second))
			tc := parityCase{name: ex.name, image: ex.name, args: ex.args}
			compareRuns(t, &allowList{reasons: map[string]string{}, used: map[string]bool{}}, tc.name, dockerRun(d, tc), c2vmRun(t, out, tc))
			if ex.name == "go-server" {
				serveAndStop(t, d, out)
			}
		})
	}
	t.Run("readme-routes-2-3", func(t *testing.T) { readmeRoutes(t, d, work) })
}

// The README's routes 2 and 3 ("In `docker build`"), as a user types them; readmeRoutes checks
// that README.md still has each line (whitespace aside).
var (
	readmeRoute2 = []string{"docker save myapp -o myapp.tar && c2vm convert -o myapp.bundle myapp.tar"}
	readmeRoute3 = []string{
		"docker save myapp -o myapp.tar",
		"docker build --target bundle --build-arg IMAGE=myapp.tar --output type=local,dest=myapp.bundle .",
		"docker build --target hello --output type=local,dest=hello.bundle .",
	}
)

// offlineBuild is what the tier adds to a README `docker build` line: its daemon has no network
// for RUN steps but the host's, and no registry, so the base images are the local ones (the README:
// "Base images are build arguments ... so offline builders can point them at local images"). The
// same arguments as the converter build above, so the build and converter stages come from its
// cache.
const offlineBuild = " --network host --build-arg GO_IMAGE=c2vm-parity-go --build-arg DEBIAN_IMAGE=c2vm-parity-base"

// readmeRoutes runs routes 2 and 3 with Debian's docker.io client (DOCKER_BUILDKIT=1, as the
// README says) and bin/c2vm first on PATH, myapp being the vm-stage example's app image: route 2
// in an empty directory, route 3 in a copy of the checkout (the build context). Each bundle boots
// and matches docker run of myapp; the hello bundle boots and greets.
func readmeRoutes(t *testing.T, d *dockertest.Daemon, work string) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(readme)), " ")
	for _, line := range append(readmeRoute2, readmeRoute3...) {
		if !strings.Contains(flat, line) {
			t.Fatalf("README.md no longer has %q: update the parity tier's README routes with it", line)
		}
	}
	d.Must(t, "tag", "parity-vm-stage", "myapp")
	sh := func(t *testing.T, dir, line string) {
		t.Helper()
		if strings.HasPrefix(line, "docker build ") {
			line = strings.TrimSuffix(line, " .") + offlineBuild + " ."
		}
		cmd := exec.Command("bash", "-c", line)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+d.Sock, "DOCKER_BUILDKIT=1",
			"PATH="+filepath.Dir(dockertest.Client)+string(os.PathListSeparator)+os.Getenv("C2VM_LIBDIR")+string(os.PathListSeparator)+os.Getenv("PATH"))
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, clip(string(out)))
		}
		t.Logf("%s: %s", line, time.Since(start).Round(time.Second))
	}
	tc := parityCase{name: "myapp", image: "vm-stage"}
	want := dockerRun(d, tc)
	t.Run("route-2", func(t *testing.T) {
		dir := filepath.Join(work, "route2")
		os.MkdirAll(dir, 0o755)
		for _, line := range readmeRoute2 {
			sh(t, dir, line)
		}
		compareRuns(t, &allowList{reasons: map[string]string{}, used: map[string]bool{}}, tc.name, want, c2vmRun(t, filepath.Join(dir, "myapp.bundle"), tc))
	})
	t.Run("route-3", func(t *testing.T) {
		dir := filepath.Join(work, "route3")
		copyCheckout(t, filepath.Join("..", ".."), dir)
		for _, line := range readmeRoute3 {
			sh(t, dir, line)
		}
		compareRuns(t, &allowList{reasons: map[string]string{}, used: map[string]bool{}}, tc.name, want, c2vmRun(t, filepath.Join(dir, "myapp.bundle"), tc))
		hello := c2vmRun(t, filepath.Join(dir, "hello.bundle"), parityCase{name: "hello"})
		if hello.code != 0 || !strings.HasPrefix(hello.stdout, "hello from c2vm: ") {
			t.Errorf("hello.bundle: exit %d, stdout %q, stderr %q", hello.code, hello.stdout, clip(hello.stderr))
		}
	})
}

// copyCheckout copies the checkout's files (tracked, and untracked but not ignored) to dst.
func copyCheckout(t *testing.T, src, dst string) {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = src
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, rel := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		fi, err := os.Lstat(filepath.Join(src, rel))
		if err != nil || !fi.Mode().IsRegular() { // deleted in the work tree, or not a plain file
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, rel))
		if err == nil {
			err = os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, rel), b, fi.Mode().Perm())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// goImage builds c2vm-parity-go: the parity base with the host's Go toolchain, module proxy
// settings and CA bundle (the proxy may be reached through a TLS-inspecting egress whose CA only
// the host trusts).
func goImage(t *testing.T, d *dockertest.Daemon, work string) {
	t.Helper()
	ctxDir := filepath.Join(work, "ctx-go")
	os.MkdirAll(ctxDir, 0o755)
	goroot := strings.TrimSpace(mustOutput(t, "go", "env", "GOROOT"))
	if out, err := exec.Command("cp", "-a", goroot, filepath.Join(ctxDir, "go")).CombinedOutput(); err != nil {
		t.Fatalf("copy GOROOT: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", "-L", "/etc/ssl/certs/ca-certificates.crt", ctxDir).CombinedOutput(); err != nil {
		t.Fatalf("copy the CA bundle: %v\n%s", err, out)
	}
	dockerfile := fmt.Sprintf(`FROM c2vm-parity-base
COPY go /usr/local/go
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOPROXY=%s SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
`, strings.TrimSpace(mustOutput(t, "go", "env", "GOPROXY")))
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Must(t, "build", "-q", "-t", "c2vm-parity-go", ctxDir)
}

func mustOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// serveAndStop runs the go-server bundle as a server: a published port answers from the host as
// the app answers itself under docker, and a stop (SIGTERM to c2vm, docker stop to docker) ends
// both gracefully with the same stderr and status.
func serveAndStop(t *testing.T, d *dockertest.Daemon, bundle string) {
	t.Helper()
	selftest, _, _ := d.Run("", "run", "--rm", "--network", "none", "parity-go-server", "-selftest")
	_, wantLine, _ := strings.Cut(selftest, "\n")
	wantLine = strings.Replace(wantLine, "GET / ", "GET /hello ", 1)
	port := freePort(t)
	cmd := exec.Command(filepath.Join(os.Getenv("C2VM_LIBDIR"), "c2vm"), "run", "--timeout", "300", "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), bundle)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() { cmd.Wait(); done <- cmd.ProcessState.ExitCode() }()
	body, err := getUntil(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/hello", port), 200*time.Second, done)
	if err != nil || body != wantLine {
		var ended *runEnded
		if !errors.As(err, &ended) { // else getUntil has taken the exit status: c2vm is gone
			cmd.Process.Kill()
			<-done
		}
		t.Fatalf("GET /hello through -p = %q, %v; want %q\nstderr %q", body, err, wantLine, stderr.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	code := <-done
	id := strings.TrimSpace(d.Must(t, "run", "-d", "--network", "none", "parity-go-server"))
	// Stop only once it listens: a SIGTERM before its handler is installed would be ignored (PID 1).
	deadline := time.Now().Add(60 * time.Second)
	for _, logs, _ := d.Run("", "logs", id); !strings.Contains(logs, "listening"); _, logs, _ = d.Run("", "logs", id) {
		if time.Now().After(deadline) {
			t.Fatalf("docker: go-server did not report listening: %q", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.Must(t, "stop", id)
	wantCode := strings.TrimSpace(d.Must(t, "inspect", "-f", "{{.State.ExitCode}}", id))
	_, wantErr, _ := d.Run("", "logs", id)
	d.Run("", "rm", id)
	if strconv.Itoa(code) != wantCode || stderr.String() != wantErr || stdout.String() != "" {
		t.Errorf("stopped: c2vm exit %d, stderr %q, stdout %q; docker exit %s, stderr %q", code, stderr.String(), stdout.String(), wantCode, wantErr)
	}
}

type runResult struct {
	code           int
	stdout, stderr string
}

func dockerRun(d *dockertest.Daemon, tc parityCase) runResult {
	args := append([]string{"run", "--rm", "--network", "none", "-h", "c2vm"}, tc.flags...)
	args = append(append(args, "parity-"+tc.image), tc.args...)
	out, errs, err := d.Run(tc.stdin, args...)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		errs += err.Error()
	}
	return runResult{code, out, errs}
}

func c2vmRun(t *testing.T, bundle string, tc parityCase) runResult {
	args := append([]string{"run", "--network", "none", "--timeout", "300"}, tc.flags...)
	args = append(args, bundle)
	if len(tc.args) > 0 {
		args = append(append(args, "--"), tc.args...)
	}
	code, out, errs := c2vm(t, tc.stdin, args...)
	return runResult{code, out, errs}
}

// buildAndConvert builds testdata/parity/NAME with docker, saves it and converts the archive.
func buildAndConvert(t *testing.T, d *dockertest.Daemon, work, name, format string) string {
	t.Helper()
	ctxDir := filepath.Join(work, "ctx-"+name)
	if err := os.CopyFS(ctxDir, os.DirFS(filepath.Join(parityDir, name))); err != nil {
		t.Fatal(err)
	}
	if src := filepath.Join(ctxDir, "hello.go.txt"); fileExists(src) {
		goBuildStatic(t, src, filepath.Join(ctxDir, "hello"))
	}
	d.Must(t, "build", "--network", "host", "-q", "-t", "parity-"+name, ctxDir)
	archive := filepath.Join(work, name+".tar")
	d.Save(t, "parity-"+name, archive)
	return convertArchive(t, archive, filepath.Join(work, name+"-"+format), format)
}

func convertArchive(t *testing.T, archive, out, format string, flags ...string) string {
	t.Helper()
	args := append([]string{"convert", "--quiet", "--rootfs-format", format, "-o", out}, flags...)
	code, _, stderr := c2vm(t, "", append(args, "docker-archive:"+archive)...)
	if code != 0 {
		t.Fatalf("convert %s (%s): exit %d: %s", archive, format, code, stderr)
	}
	return out
}

func goBuildStatic(t *testing.T, src, out string) {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), b, 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", src, err, b)
	}
	os.Remove(src)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func compareRuns(t *testing.T, allow *allowList, name string, want, got runResult) {
	t.Helper()
	check := func(field string, equal bool, detail string) {
		if equal {
			return
		}
		if allow.has(name, field) {
			t.Logf("%s differs (allowed: %s): %s", field, allow.reason(name, field), detail)
			return
		}
		t.Errorf("%s: docker and c2vm differ: %s", field, detail)
	}
	check("exit", want.code == got.code, fmt.Sprintf("docker %d, c2vm %d (c2vm stderr %q)", want.code, got.code, clip(got.stderr)))
	check("stdout", want.stdout == got.stdout, fmt.Sprintf("docker %d bytes %q, c2vm %d bytes %q", len(want.stdout), clip(want.stdout), len(got.stdout), clip(got.stdout)))
	check("stderr", want.stderr == got.stderr, fmt.Sprintf("docker %q, c2vm %q", clip(want.stderr), clip(got.stderr)))
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// compareListings compares two listings line by line, keyed by path.
func compareListings(t *testing.T, allow *allowList, format, want, got string) {
	t.Helper()
	w, g := listingByPath(want), listingByPath(got)
	var paths []string
	for p := range w {
		paths = append(paths, p)
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		if w[p] == g[p] {
			continue
		}
		field := "listing:" + p
		if allow.has("listing", field) {
			continue
		}
		t.Errorf("%s: %s: docker %q, c2vm %q", format, p, w[p], g[p])
	}
}

// listingByPath maps each listed path to its line (getcap lines "PATH CAPS" as "PATH caps").
func listingByPath(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		p, _, _ := strings.Cut(line, " ")
		if strings.Contains(line, " cap_") { // a getcap line
			p += " (caps)"
		}
		m[p] = line
	}
	return m
}

// allowList is testdata/parity/allow.txt: lines "CASE FIELD REASON", FIELD one of exit, stdout,
// stderr or listing:PATH (with CASE "listing").
type allowList struct {
	reasons map[string]string
	used    map[string]bool
}

func readAllowList(t *testing.T) *allowList {
	t.Helper()
	f, err := os.Open(filepath.Join(parityDir, "allow.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := &allowList{reasons: map[string]string{}, used: map[string]bool{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.SplitN(line, " ", 3)
		if len(fields) < 3 || strings.TrimSpace(fields[2]) == "" {
			t.Fatalf("allow.txt:%d: want CASE FIELD REASON, got %q", n, line)
		}
		known := slices.ContainsFunc(parityCases, func(c parityCase) bool { return c.name == fields[0] }) || fields[0] == "listing"
		if !known {
			t.Fatalf("allow.txt:%d: no parity case %q", n, fields[0])
		}
		a.reasons[fields[0]+" "+fields[1]] = fields[2]
	}
	return a
}

func (a *allowList) has(name, field string) bool {
	_, ok := a.reasons[name+" "+field]
	if ok {
		a.used[name+" "+field] = true
	}
	return ok
}

func (a *allowList) reason(name, field string) string { return a.reasons[name+" "+field] }

func (a *allowList) checkUsed(t *testing.T) {
	for k := range a.reasons {
		if !a.used[k] {
			t.Errorf("allow.txt: %q matched no difference: remove it", k)
		}
	}
}
