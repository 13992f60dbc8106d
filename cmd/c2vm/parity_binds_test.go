package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/c2vm/c2vm/internal/testkit/dockertest"
)

// bindCase is one check of TestParityBinds: a host entry (a directory with makeBindHost's tree, or
// the file app.conf) bound by flags ("{}" stands for the entry's host path) and the shell lines
// that exercise it. Its output is the section of the run's output under "=== name".
type bindCase struct {
	name   string
	entry  string   // under the host directory
	flags  []string // "{}" is replaced with the entry's host path
	script string
}

// bindBoots are TestParityBinds's runs: each one boots a single VM (and runs one container) with
// all of its cases' binds at once. Each run's last command is a failing write, so its exit status
// is that write's, compared with docker's as well.
var bindBoots = []struct {
	name  string
	flags []string
	cases []bindCase
}{
	{name: "root", cases: []bindCase{
		{"bind-listing", "listing", []string{"-v", "{}:/listing"}, bindLs + " /listing /listing/sub"},
		{"bind-write", "write", []string{"-v", "{}:/write"}, "echo from the container > /write/new; echo status $?\n" + bindLs + " /write/new; cat /write/new"},
		{"mount-bind-read-only", "mro", []string{"--mount", "type=bind,source={},target=/mro,readonly"}, "touch /mro/y; echo status $?\n" + bindLs + " /mro"},
		{"mount-bind", "mbind", []string{"--mount", "type=bind,source={},target=/mbind"}, "mkdir /mbind/made; echo status $?\n" + bindLs + " -d /mbind/made"},
		{"single-file", "app.conf", []string{"-v", "{}:/etc/app.conf:ro"}, "cat /etc/app.conf; " + bindLs + " /etc/app.conf\necho x >> /etc/app.conf; echo status $?"},
		{"bind-read-only", "ro", []string{"-v", "{}:/ro:ro"}, "echo x > /ro/x; echo status $?\nrm /ro/hello.txt"},
	}},
	{name: "non-root", flags: []string{"-u", "app"}, cases: []bindCase{
		{"non-root-write", "nonroot", []string{"-v", "{}:/nonroot"}, "touch /nonroot/appdir/ok; echo status $?\ntouch /nonroot/sub/no; echo status $?\n" +
			"cat /nonroot/secret; echo status $?\n" + bindLs + " /nonroot/appdir\necho x > /nonroot/hello.txt"},
	}},
}

const bindLs = "ls -ln --time-style=+"

// TestParityBinds runs docker and c2vm on the fidelity image with host directories bound the
// docker ways (-v DIR:/x, -v DIR:/x:ro, --mount type=bind[,readonly], a single file), each over its
// own host directory, made afresh before each run: the container's listing (ls -ln), a write and
// the host's view of it afterwards, EROFS on a read-only bind, and what non-root user app (1000)
// may write must all be the same. One VM per user (bindBoots) carries all the binds, and its
// output is compared section by section, so a difference still names its case.
func TestParityBinds(t *testing.T) {
	if os.Getenv("C2VM_PARITY") != "1" {
		t.Skip("parity tier: runs with C2VM_PARITY=1 (make test-parity; make test and CI run it)")
	}
	requireVM(t)
	if m := dockertest.Missing(); len(m) > 0 {
		t.Fatalf("parity test needs: %s — run `make test-parity`, which installs them", strings.Join(m, "; "))
	}
	d := dockertest.Start(t)
	d.BaseImage(t, dockertest.CacheDir(), "c2vm-parity-base", parityBase)
	work := t.TempDir()
	bundle := buildAndConvert(t, d, work, "fidelity", "squashfs")
	host := filepath.Join(work, "host")
	for _, boot := range bindBoots {
		t.Run(boot.name, func(t *testing.T) {
			flags := append([]string(nil), boot.flags...)
			script := "exec 2>&1\n"
			for _, c := range boot.cases {
				for _, f := range c.flags {
					flags = append(flags, strings.ReplaceAll(f, "{}", filepath.Join(host, c.entry)))
				}
				script += "echo '=== " + c.name + "'\n" + c.script + "\n"
			}
			pc := parityCase{name: boot.name, image: "fidelity", flags: flags, args: []string{"sh", "-c", script}}
			hostAfter := func(run func() runResult) (runResult, map[string]string) {
				makeBindHost(t, host)
				r := run()
				entries := map[string]string{}
				for _, c := range boot.cases {
					entries[c.entry] = hostListing(t, host, c.entry)
				}
				return r, entries
			}
			want, wantHost := hostAfter(func() runResult { return dockerRun(d, pc) })
			got, gotHost := hostAfter(func() runResult { return c2vmRun(t, bundle, pc) })
			last := boot.cases[len(boot.cases)-1].name
			if want.code != got.code {
				t.Errorf("exit status (of %s's last write): docker %d, c2vm %d (c2vm stderr %q)", last, want.code, got.code, clip(got.stderr))
			}
			if want.stderr != got.stderr {
				t.Errorf("stderr: docker %q, c2vm %q", clip(want.stderr), clip(got.stderr))
			}
			wantOut, gotOut := bindSections(want.stdout), bindSections(got.stdout)
			if wantOut[""] != gotOut[""] {
				t.Errorf("output before the first case: docker %q, c2vm %q", wantOut[""], gotOut[""])
			}
			for _, c := range boot.cases {
				t.Run(c.name, func(t *testing.T) {
					w, wok := wantOut[c.name]
					g, gok := gotOut[c.name]
					switch {
					case !wok:
						t.Fatalf("docker's output has no section %q (did the script stop early?): %q", c.name, clip(want.stdout))
					case !gok:
						t.Errorf("c2vm's output has no section %q (docker's: %q): %q", c.name, w, clip(got.stdout))
					case w != g:
						t.Errorf("output differs:\ndocker:\n%s\nc2vm:\n%s", w, g)
					}
					if wantHost[c.entry] != gotHost[c.entry] {
						t.Errorf("host %s after the run differs:\ndocker:\n%s\nc2vm:\n%s", c.entry, wantHost[c.entry], gotHost[c.entry])
					}
					t.Logf("docker and c2vm: %q", clip(g))
				})
			}
			t.Logf("docker and c2vm: exit %d, stderr %q", got.code, clip(got.stderr))
		})
	}
}

// bindSections splits a run's output at its "=== NAME" lines: NAME's section is what follows,
// up to the next such line; what comes before the first one is under "".
func bindSections(out string) map[string]string {
	sections := map[string]string{}
	name := ""
	for _, line := range strings.SplitAfter(out, "\n") {
		if n, ok := strings.CutPrefix(line, "=== "); ok {
			name = strings.TrimSuffix(n, "\n")
			continue
		}
		sections[name] += line
	}
	return sections
}

// makeBindHost (re)makes the host side: for each bind directory of bindBoots, a tree owned by
// root with a file, a root-only file, a root-owned directory and one owned by app (1000); and a
// single file app.conf; all at fixed times.
func makeBindHost(t *testing.T, host string) {
	t.Helper()
	if err := os.RemoveAll(host); err != nil {
		t.Fatal(err)
	}
	type entry struct {
		rel      string
		content  string // "" = a directory
		mode     os.FileMode
		uid, gid int
	}
	entries := []entry{{"", "", 0o755, 0, 0}, {"app.conf", "key = value\n", 0o644, 0, 0}}
	for _, boot := range bindBoots {
		for _, c := range boot.cases {
			if c.entry == "app.conf" {
				continue
			}
			entries = append(entries,
				entry{c.entry, "", 0o755, 0, 0},
				entry{c.entry + "/hello.txt", "hello\n", 0o644, 0, 0},
				entry{c.entry + "/secret", "secret\n", 0o600, 0, 0},
				entry{c.entry + "/sub", "", 0o755, 0, 0},
				entry{c.entry + "/sub/file", "in sub\n", 0o640, 0, 50},
				entry{c.entry + "/appdir", "", 0o750, 1000, 1000})
		}
	}
	for _, f := range entries {
		p := filepath.Join(host, f.rel)
		var err error
		if f.content == "" {
			err = os.MkdirAll(p, f.mode)
		} else {
			err = os.WriteFile(p, []byte(f.content), f.mode)
		}
		if err == nil {
			err = os.Chmod(p, f.mode)
		}
		if err == nil {
			err = os.Chown(p, f.uid, f.gid)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := len(entries) - 1; i >= 0; i-- { // children before their directories
		if err := os.Chtimes(filepath.Join(host, entries[i].rel), when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// hostListing is the host entry rel of host as the host sees it: paths, types, owners, modes,
// contents.
func hostListing(t *testing.T, host, rel string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `cd "$1" && find "$2" -printf '%p %y %U:%G %m\n' | LC_ALL=C sort && find "$2" -type f -exec md5sum {} + | LC_ALL=C sort`, "sh", host, rel).CombinedOutput()
	if err != nil {
		t.Fatalf("list %s: %v: %s", filepath.Join(host, rel), err, out)
	}
	return string(out)
}
