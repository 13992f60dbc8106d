package vm

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestArgvShares(t *testing.T) {
	connect := func() (*os.File, error) { return nil, nil }
	tests := []struct {
		name   string
		shares []Share
		want   string // the share arguments, space-joined; "" = none
	}{
		{"none", nil, ""},
		{"virtio-fs", []Share{{Tag: "c2vm-fs0", Connect: connect}, {Tag: "c2vm-fs1", Connect: connect}},
			"-object memory-backend-memfd,id=mem,size=384M,share=on -machine memory-backend=mem" +
				" -chardev socket,id=fs0,fd=3 -device vhost-user-fs-pci,chardev=fs0,tag=c2vm-fs0,queue-size=1024" +
				" -chardev socket,id=fs1,fd=4 -device vhost-user-fs-pci,chardev=fs1,tag=c2vm-fs1,queue-size=1024"},
		{"9p", []Share{{Tag: "c2vm-fs0", Dir: "/h/a,b", ReadOnly: true}},
			"-fsdev local,id=fs0,path=/h/a,,b,security_model=" + security9p() + ",readonly=on -device virtio-9p-pci,fsdev=fs0,mount_tag=c2vm-fs0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{QEMU: "/usr/bin/qemu-system-x86_64", Kernel: "/b/vmlinuz", Initrd: "/t/initrd", Accel: "tcg", MemoryMiB: 384, Shares: tt.shares}
			argv, err := Argv(cfg, map[string]string{portConsole: "/s/con"})
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(argv, " ")
			if tt.want == "" {
				if strings.Contains(all, "memory-backend") || strings.Contains(all, "vhost-user-fs") {
					t.Errorf("share arguments without shares: %s", all)
				}
				return
			}
			if !strings.Contains(all, " "+tt.want+" ") {
				t.Errorf("argv\n%s\nlacks\n%s", all, tt.want)
			}
		})
	}
}

// TestConnectSharesFails: a share whose daemon cannot start fails the boot, naming the share,
// and closes the sockets already made.
func TestConnectSharesFails(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	shares := []Share{
		{Tag: "c2vm-fs0", Connect: func() (*os.File, error) { return w, nil }},
		{Tag: "c2vm-fs1", Dir: "/9p"},
		{Tag: "c2vm-fs2", Connect: func() (*os.File, error) { return nil, errors.New("no virtiofsd") }},
	}
	_, err = connectShares(shares)
	if err == nil || !strings.Contains(err.Error(), "c2vm-fs2: no virtiofsd") {
		t.Fatalf("err = %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("the first share's socket was left open")
	}
}
