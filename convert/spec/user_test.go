package spec

import (
	"slices"
	"strings"
	"testing"
)

func TestResolveUser(t *testing.T) {
	tests := []struct {
		name          string
		spec          string
		passwd, group []byte
		want          User
	}{
		{"empty is root", "", testPasswd, testGroup, User{0, 0, []uint32{10}, "/root"}},
		{"name", "app", testPasswd, testGroup, User{1000, 1000, []uint32{10, 29}, "/home/app"}},
		{"uid", "1000", testPasswd, testGroup, User{1000, 1000, []uint32{10, 29}, "/home/app"}},
		{"uid:gid", "1000:50", testPasswd, testGroup, User{1000, 50, nil, "/home/app"}},
		{"name:group", "app:staff", testPasswd, testGroup, User{1000, 50, nil, "/home/app"}},
		{"uid:group", "1000:staff", testPasswd, testGroup, User{1000, 50, nil, "/home/app"}},
		{"name:gid", "app:29", testPasswd, testGroup, User{1000, 29, nil, "/home/app"}},
		{"unknown uid", "4242", testPasswd, testGroup, User{4242, 0, nil, "/"}},
		{"unknown uid:gid", "4242:4343", testPasswd, testGroup, User{4242, 4343, nil, "/"}},
		{"empty home field", "nohome", testPasswd, testGroup, User{1002, 1002, nil, "/"}},
		{"root by name", "root", testPasswd, testGroup, User{0, 0, []uint32{10}, "/root"}},
		{"no passwd, empty", "", nil, nil, User{0, 0, nil, "/"}},
		{"no passwd, uid", "1000", nil, nil, User{1000, 0, nil, "/"}},
		{"no passwd, uid:gid", "65532:65532", nil, nil, User{65532, 65532, nil, "/"}},
		{"no group file", "app", testPasswd, nil, User{1000, 1000, nil, "/home/app"}},
		{"empty passwd file, uid", "7", []byte{}, []byte{}, User{7, 0, nil, "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveUser(tt.spec, tt.passwd, tt.group)
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tt.spec, err)
			}
			if got.UID != tt.want.UID || got.GID != tt.want.GID || got.Home != tt.want.Home ||
				!slices.Equal(got.AdditionalGids, tt.want.AdditionalGids) {
				t.Errorf("ResolveUser(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestResolveUserErrors(t *testing.T) {
	tests := []struct {
		name          string
		spec          string
		passwd, group []byte
		want          []string // substrings of the error
	}{
		{"unknown name", "nobody2", testPasswd, testGroup, []string{`"nobody2"`, "no such user", "/etc/passwd"}},
		{"name without passwd", "app", nil, testGroup, []string{`"app"`, "no /etc/passwd"}},
		{"name in empty passwd", "app", []byte{}, nil, []string{`"app"`, "no such user"}},
		{"unknown group", "app:nogroup", testPasswd, testGroup, []string{`"nogroup"`, "no such group"}},
		{"group without group file", "app:staff", testPasswd, nil, []string{`"staff"`, "no /etc/group"}},
		{"uid out of range", "4294967296", testPasswd, testGroup, []string{"range"}},
		{"negative uid", "-1", testPasswd, testGroup, []string{"range"}},
		{"gid out of range", "0:2147483648", testPasswd, testGroup, []string{"range"}},
		{"too many colons", "a:b:c", testPasswd, testGroup, []string{"user[:group]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResolveUser(tt.spec, tt.passwd, tt.group)
			if err == nil {
				t.Fatalf("ResolveUser(%q) = %+v, want error", tt.spec, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
