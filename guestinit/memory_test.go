package guestinit

import (
	"encoding/json"
	"strings"
	"testing"
)

// meminfo256 is /proc/meminfo of a 256 MiB guest as the workload starts (measured).
const meminfo256 = "MemTotal:         223760 kB\nMemFree:          170552 kB\nMemAvailable:     175116 kB\nCached:            15616 kB\n"

func TestWorkloadMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		meminfo string
		want    int64
	}{
		{"256 MiB guest", meminfo256, 175116<<10 - 16<<20 - (223760<<10)/32},
		{"nothing left", "MemTotal: 65536 kB\nMemAvailable: 16000 kB\n", 0},
		{"too small to split (64 MiB guest, c2vm kernel)", "MemTotal: 49212 kB\nMemAvailable: 15280 kB\n", 0},
		{"just over the floor", "MemTotal: 65536 kB\nMemAvailable: 52224 kB\n", 52224<<10 - 16<<20 - (65536<<10)/32},
		{"no MemAvailable", "MemTotal: 65536 kB\n", 0},
		{"garbage", "MemTotal: lots\nMemAvailable: 1 kB\n", 0},
		{"empty", "", 0},
	} {
		if got := workloadMemoryLimit([]byte(tc.meminfo)); got != tc.want {
			t.Errorf("%s: limit %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPatchSpecMemoryLimit(t *testing.T) {
	const limit = 150 << 20
	for _, tc := range []struct {
		name, linux string
		want        int64
	}{
		{"no resources", `{"namespaces":[]}`, limit},
		{"other resources kept", `{"resources":{"pids":{"limit":10},"memory":{"swappiness":0}}}`, limit},
		{"higher limit lowered", `{"resources":{"memory":{"limit":1073741824}}}`, limit},
		{"lower limit kept", `{"resources":{"memory":{"limit":1048576}}}`, 1 << 20},
	} {
		out, err := PatchSpec([]byte(`{"linux":`+tc.linux+`}`), SpecPatch{MemoryLimit: limit})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Linux struct {
				Resources struct {
					Pids   *struct{ Limit int64 }
					Memory struct {
						Limit      int64
						Swappiness *uint64
					}
				}
			}
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if got.Linux.Resources.Memory.Limit != tc.want {
			t.Errorf("%s: memory limit %d, want %d:\n%s", tc.name, got.Linux.Resources.Memory.Limit, tc.want, out)
		}
		if strings.Contains(tc.linux, "pids") && (got.Linux.Resources.Pids == nil || got.Linux.Resources.Memory.Swappiness == nil) {
			t.Errorf("%s: other resource settings lost:\n%s", tc.name, out)
		}
	}
	out, _ := PatchSpec([]byte(`{"linux":{}}`), SpecPatch{})
	if strings.Contains(string(out), "resources") {
		t.Errorf("no limit asked, resources written:\n%s", out)
	}
}
