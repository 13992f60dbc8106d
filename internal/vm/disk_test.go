package vm

import (
	"slices"
	"testing"
)

func TestArgvDisks(t *testing.T) {
	cfg := Config{
		QEMU: "/usr/bin/qemu-system-x86_64", Kernel: "/b/vmlinuz", Initrd: "/t/initrd", Accel: "tcg",
		Disks: []Disk{
			{Path: "/b/rootfs.squashfs", ReadOnly: true},
			{Path: "/v/a,b.img", ReadOnly: true, Serial: "c2vm-vol0"},
			{Path: "/p/upper.img", Serial: "c2vm-upper"},
		},
	}
	argv, err := Argv(cfg, map[string]string{portConsole: "/s/con"})
	if err != nil {
		t.Fatal(err)
	}
	var drives, devices []string
	for i := 0; i+1 < len(argv); i++ {
		switch argv[i] {
		case "-drive":
			drives = append(drives, argv[i+1])
		case "-device":
			devices = append(devices, argv[i+1])
		}
	}
	wantDrives := []string{
		"id=disk0,file=/b/rootfs.squashfs,format=raw,if=none,readonly=on",
		"id=disk1,file=/v/a,,b.img,format=raw,if=none,readonly=on",
		"id=disk2,file=/p/upper.img,format=raw,if=none",
	}
	if !slices.Equal(drives, wantDrives) {
		t.Errorf("drives %q, want %q", drives, wantDrives)
	}
	for _, want := range []string{"virtio-blk-pci,drive=disk0", "virtio-blk-pci,drive=disk1,serial=c2vm-vol0", "virtio-blk-pci,drive=disk2,serial=c2vm-upper"} {
		if !slices.Contains(devices, want) {
			t.Errorf("no -device %q in %q", want, devices)
		}
	}
}
