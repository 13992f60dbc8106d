package convert

import (
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestApplyChanges checks --change against docker's semantics for each instruction, in JSON and
// shell forms.
func TestApplyChanges(t *testing.T) {
	base := ocispec.ImageConfig{Cmd: []string{"old"}, Env: []string{"PATH=/bin", "A=0"}, WorkingDir: "/srv"}
	tests := []struct {
		changes []string
		want    ocispec.ImageConfig
	}{
		{[]string{`CMD ["a", "b c"]`}, ocispec.ImageConfig{Cmd: []string{"a", "b c"}, Env: base.Env, WorkingDir: "/srv"}},
		{[]string{`CMD echo $HOME`}, ocispec.ImageConfig{Cmd: []string{"/bin/sh", "-c", "echo $HOME"}, Env: base.Env, WorkingDir: "/srv"}},
		{[]string{`ENTRYPOINT ["/app"]`}, ocispec.ImageConfig{Entrypoint: []string{"/app"}, Env: base.Env, WorkingDir: "/srv"}},
		{[]string{`CMD ["x"]`, `ENTRYPOINT /app --flag`}, ocispec.ImageConfig{Entrypoint: []string{"/bin/sh", "-c", "/app --flag"}, Cmd: []string{"x"}, Env: base.Env, WorkingDir: "/srv"}},
		{[]string{`ENV A=1 B="two words"`, `ENV C 3`, `ENV D=$PATH:/x`}, ocispec.ImageConfig{Cmd: base.Cmd, Env: []string{"PATH=/bin", "A=1", "B=two words", "C=3", "D=/bin:/x"}, WorkingDir: "/srv"}},
		{[]string{`USER app:staff`, `WORKDIR data`, `WORKDIR sub`}, ocispec.ImageConfig{Cmd: base.Cmd, Env: base.Env, User: "app:staff", WorkingDir: "/srv/data/sub"}},
		{[]string{`WORKDIR /abs/../x`}, ocispec.ImageConfig{Cmd: base.Cmd, Env: base.Env, WorkingDir: "/x"}},
		{[]string{`EXPOSE 80 53/udp`, `VOLUME ["/data", "/cache"]`, `STOPSIGNAL SIGQUIT`, `LABEL a=b "c d"=e`}, ocispec.ImageConfig{
			Cmd: base.Cmd, Env: base.Env, WorkingDir: "/srv", StopSignal: "SIGQUIT",
			ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}}, Volumes: map[string]struct{}{"/data": {}, "/cache": {}},
			Labels: map[string]string{"a": "b", "c d": "e"}}},
	}
	for _, tt := range tests {
		got, err := ApplyChanges(base, tt.changes)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ApplyChanges(%q) = %+v, %v\nwant %+v", tt.changes, got, err, tt.want)
		}
	}
	for _, bad := range []string{`RUN rm -rf /`, `FROM x`, `CMD ["a"]` + "\n" + `USER x`, `ENV`, `BOGUS x`} {
		if _, err := ApplyChanges(base, []string{bad}); err == nil || !strings.Contains(err.Error(), "--change") {
			t.Errorf("ApplyChanges(%q) error %v", bad, err)
		}
	}
}
