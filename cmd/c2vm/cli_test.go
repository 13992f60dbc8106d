package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/c2vm/c2vm/internal/vm"
)

func TestParseForward(t *testing.T) {
	tests := []struct {
		in   string
		want vm.Forward
		err  bool
	}{
		{"8080:80", vm.Forward{Proto: "tcp", HostPort: 8080, GuestPort: 80}, false},
		{"127.0.0.2:8080:80/udp", vm.Forward{Proto: "udp", HostIP: "127.0.0.2", HostPort: 8080, GuestPort: 80}, false},
		{"80", vm.Forward{}, true},
		{"8080:80/sctp", vm.Forward{}, true},
		{"0:80", vm.Forward{}, true},
		{"a:b:c:d", vm.Forward{}, true},
	}
	for _, tt := range tests {
		got, err := parseForward(tt.in)
		if (err != nil) != tt.err || (!tt.err && got != tt.want) {
			t.Errorf("parseForward(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func TestRunEnv(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "env")
	os.WriteFile(f, []byte("# comment\nA=1\n\nFROM_HOST\nB=two words\n"), 0o644)
	t.Setenv("FROM_HOST", "h")
	t.Setenv("C", "c")
	got, err := runEnv([]string{f}, []string{"B=3", "C", "UNSET_VAR_XYZ"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "FROM_HOST=h", "B=two words", "B=3", "C=c", "UNSET_VAR_XYZ"} // the last unsets the image's
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("env = %q, want %q", got, want)
	}
	// docker's rules: leading whitespace dropped, trailing kept; CRLF lines; errors as docker words them.
	os.WriteFile(f, []byte("\xef\xbb\xbf  A=1  \r\n\tB= two \n"), 0o644)
	if got, err := runEnv([]string{f}, nil); err != nil || !reflect.DeepEqual(got, []string{"A=1  ", "B= two "}) {
		t.Fatalf("env = %q, %v; want trailing whitespace kept", got, err)
	}
	for content, msg := range map[string]string{
		"=x\n":            ":1: poorly formatted environment: no variable name on line '=x'",
		"A=1\nMY VAR=1\n": ":2: poorly formatted environment: variable 'MY VAR' contains whitespaces",
	} {
		os.WriteFile(f, []byte(content), 0o644)
		if _, err := runEnv([]string{f}, nil); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("env file %q: %v; want %q", content, err, msg)
		}
	}
}

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "0": 0, "120": 120 * time.Second, "90s": 90 * time.Second, "2m": 2 * time.Minute} {
		if got, err := parseTimeout(in); err != nil || got != want {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "-5s", "1.5", "soon"} {
		if _, err := parseTimeout(in); err == nil {
			t.Errorf("parseTimeout(%q) accepted", in)
		}
	}
}

func TestParseSizes(t *testing.T) {
	for in, want := range map[string]int{"": 0, "512": 512, "512m": 512, "1g": 1024, "1.5GiB": 1536, "100k": 1} {
		if got, err := parseMemory("--memory", in); err != nil || got != want {
			t.Errorf("parseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, want := range map[string]int{"": 0, "1": 1, "0.5": 1, "2": 2, "2.1": 3} {
		if got, err := parseCPUs("--cpus", in); err != nil || got != want {
			t.Errorf("parseCPUs(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "x", "NaN"} {
		if _, err := parseCPUs("--cpus", in); err == nil {
			t.Errorf("parseCPUs(%q) accepted", in)
		}
	}
}

func TestVersionAndRm(t *testing.T) {
	if code, out, _ := c2vm(t, "", "--version"); code != 0 || !strings.HasPrefix(out, "c2vm ") || !strings.HasSuffix(out, "\n") {
		t.Errorf("--version: %d %q", code, out)
	}
	// --rm is accepted: the error is about the bundle, not the flag.
	if _, _, stderr := c2vm(t, "", "run", "--rm", t.TempDir()); !strings.Contains(stderr, "not a c2vm bundle") {
		t.Errorf("run --rm: %q", stderr)
	}
}

func TestAccelFromEnvironment(t *testing.T) {
	t.Setenv("C2VM_ACCEL", "warp")
	code, _, stderr := c2vm(t, "", "run", t.TempDir())
	if code != ExitFailure || !strings.Contains(stderr, `accelerator "warp"`) {
		t.Errorf("C2VM_ACCEL=warp: exit %d, stderr %q; want 125 naming the bad value", code, stderr)
	}
}

func TestCLIErrorsAreOneLine(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"convert", "-o", filepath.Join(dir, "b")}, "want exactly one IMAGE"},
		{[]string{"convert", "-o", filepath.Join(dir, "b"), "--rootfs-format", "ext9", "oci:" + dir}, "unknown rootfs format"},
		{[]string{"inspect", dir}, "not a c2vm bundle"},
		{[]string{"run", dir}, "not a c2vm bundle"},
		{[]string{"run", "--network", "bridge", dir}, "--network"},
		{[]string{"run", "-p", "80", dir}, "--publish"},
		{[]string{"run", "--accel", "foo", dir}, "--accel (or C2VM_ACCEL): accelerator \"foo\": want auto, kvm or tcg"},
		{[]string{"run", "--timeout", "soon", dir}, "--timeout \"soon\": want seconds"},
		{[]string{"run", "--network", "none", "-p", "8080:80", dir}, "conflicting options: --publish"},
		{[]string{"run", "-d", dir}, "is not a c2vm bundle"},
		{[]string{"run", "--name", "x", dir}, "--name names a detached VM: add -d"},
		{[]string{"run", "--privileged", dir}, "--privileged: not supported: add what the workload needs with --cap-add"},
		{[]string{"run", "--tmpfs", "rel", dir}, "--tmpfs \"rel\": want an absolute path"},
		{[]string{"run", "-m", "lots", dir}, "--memory \"lots\": want MiB"},
		{[]string{"run", "--cpus", "-1", dir}, "--cpus \"-1\""},
		{[]string{"run", "--bogus", dir}, "run: flag provided but not defined: -bogus (see c2vm run --help)"},
		{[]string{"convert", "oci:" + dir, "-o", filepath.Join(dir, "b")}, "\"-o\" after the image: flags go before IMAGE"},
		{[]string{"convert", "oci:" + dir}, "--output (-o) DIR is required"},
		{[]string{"convert", "-o", filepath.Join(dir, "b"), "--rootfs-format", "erofs", "--compression", "lz4", "oci:" + dir}, "--compression lz4: erofs images are written uncompressed"},
		{[]string{"export", dir}, "export: --runner (cloud-hypervisor, firecracker, qemu, spindle) and -o DIR are required"},
		{[]string{"export", "--runner", "qemu", "-o", filepath.Join(dir, "x"), dir}, "not a c2vm bundle"},
	}
	for _, tt := range tests {
		code, stdout, stderr := c2vm(t, "", tt.args...)
		if code != ExitFailure || stdout != "" {
			t.Errorf("%v: exit %d stdout %q, want 125 and no output", tt.args, code, stdout)
		}
		if !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "c2vm: ") {
			t.Errorf("%v: stderr = %q, want one line containing %q", tt.args, stderr, tt.want)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%v: left files behind in %s", tt.args, dir)
		}
	}
}
