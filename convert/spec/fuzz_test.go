package spec

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzResolveUser checks that any user spec and any passwd/group content resolve or fail without
// panicking, and that numeric specs keep their ids. Empty content stands for an absent file.
func FuzzResolveUser(f *testing.F) {
	for _, spec := range []string{"", "app", "1000", "1000:50", "app:staff", "1000:staff", "app:29", "ghost", "a:b:c", "-1", "4294967296"} {
		f.Add(spec, testPasswd, testGroup)
	}
	f.Add("root", []byte("root:x:0:0"), []byte("root:x:0:root,,"))
	f.Add("x", []byte("x:x:notanumber:1:::\n::::::::\n"), []byte{})
	f.Fuzz(func(t *testing.T, userSpec string, passwd, group []byte) {
		u, err := ResolveUser(userSpec, orNil(passwd), orNil(group))
		if err != nil {
			if !strings.Contains(err.Error(), "resolve user") {
				t.Errorf("error %q does not say it is about resolving the user", err)
			}
			return
		}
		if u.Home == "" {
			t.Errorf("ResolveUser(%q) has an empty Home", userSpec)
		}
		name, grp, hasGroup := strings.Cut(userSpec, ":")
		if uid, err := strconv.ParseUint(name, 10, 32); err == nil && strconv.FormatUint(uid, 10) == name && uint32(uid) != u.UID {
			t.Errorf("ResolveUser(%q).UID = %d, want %d", userSpec, u.UID, uid)
		}
		if gid, err := strconv.ParseUint(grp, 10, 32); hasGroup && err == nil && strconv.FormatUint(gid, 10) == grp && uint32(gid) != u.GID {
			t.Errorf("ResolveUser(%q).GID = %d, want %d", userSpec, u.GID, gid)
		}
	})
}

func orNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
