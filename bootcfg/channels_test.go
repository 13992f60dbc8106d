package bootcfg

import "testing"

func TestParseChannels(t *testing.T) {
	for cmdline, want := range map[string]string{
		"": "", "console=ttyS0 c2vm.channels=vsock": ChannelsVsock, FormatChannels(ChannelsVsock): ChannelsVsock,
		"c2vm.channels=vsock c2vm.channels=": "", "xc2vm.channels=vsock": "",
	} {
		if got := ParseChannels(cmdline); got != want {
			t.Errorf("ParseChannels(%q) = %q, want %q", cmdline, got, want)
		}
	}
	seen := map[uint32]string{}
	for _, name := range []string{StatusPortName, StdoutPortName, StderrPortName, StdinPortName, AgentPortName} {
		p, ok := VsockPort(name)
		if !ok || p < 1024 || seen[p] != "" {
			t.Errorf("VsockPort(%s) = %d, %v; want a distinct unprivileged port (seen %v)", name, p, ok, seen)
		}
		seen[p] = name
	}
	if _, ok := VsockPort("c2vm.nonesuch"); ok {
		t.Error("VsockPort of an unknown name: ok")
	}
}
