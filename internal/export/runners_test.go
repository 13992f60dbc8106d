package export

import (
	"os/exec"
	"strings"
	"testing"
)

// chSplit is Cloud Hypervisor's option splitting (option_parser split_commas): commas inside
// double quotes are kept, the quotes dropped.
func chSplit(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, c := range s {
		switch {
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(c)
		}
	}
	return append(out, cur.String())
}

// TestCloudHypervisorDisk runs the run.sh fragment with a stand-in for cloud-hypervisor and
// checks that the disk path survives Cloud Hypervisor's option parsing whatever its commas.
func TestCloudHypervisorDisk(t *testing.T) {
	for _, tc := range []struct {
		here   string
		refuse bool
	}{
		{"/tmp/plain", false},
		{"/tmp/a,b/c,,d", false},
		{"/tmp/with space,comma=x", false},
		{`/tmp/quote"d`, true},
		{"/tmp/br[x]", true},
	} {
		t.Run(tc.here, func(t *testing.T) {
			guard, disk := cloudHypervisorDisk("rootfs.squashfs")
			script := "here=" + shellQuote(tc.here) + "\n" + guard + "printf '%s\\n' " + disk + "\n"
			out, err := exec.Command("sh", "-c", script).CombinedOutput()
			if tc.refuse {
				if err == nil || !strings.Contains(string(out), "cannot take a path") {
					t.Fatalf("script ran for %q: %v %q", tc.here, err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			got := chSplit(strings.TrimSuffix(string(out), "\n"))
			want := []string{"path=" + tc.here + "/rootfs.squashfs", "readonly=on"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("cloud-hypervisor would read %q, want %q", got, want)
			}
		})
	}
	if g, d := cloudHypervisorDisk(""); g != "" || d != "" {
		t.Errorf("no rootfs: %q %q", g, d)
	}
}
