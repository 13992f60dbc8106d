package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/sys/user"
)

// User is a resolved container user.
type User struct {
	UID, GID uint32
	// AdditionalGids are the supplementary groups from /etc/group membership, in file order
	// (only when the group was not given explicitly, as docker and runc do).
	AdditionalGids []uint32
	// Home is the user's home directory from /etc/passwd, or "/" when the image does not list it.
	Home string
}

// ResolveUser resolves a USER value ("", "name", "uid", "uid:gid", "name:group", "uid:group",
// "name:gid") against the image's /etc/passwd and /etc/group content. A nil passwd or group means
// the file is absent from the image: numeric ids still work, names do not. "" means uid 0.
func ResolveUser(userSpec string, passwd, group []byte) (User, error) {
	if strings.Count(userSpec, ":") > 1 {
		return User{}, fmt.Errorf("resolve user %q: want user[:group]", userSpec)
	}
	defaults := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	eu, err := user.GetExecUser(userSpec, defaults, reader(passwd), reader(group))
	if err != nil {
		return User{}, userError(userSpec, passwd, group, err)
	}
	u := User{UID: uint32(eu.Uid), GID: uint32(eu.Gid), Home: eu.Home}
	for _, g := range eu.Sgids {
		u.AdditionalGids = append(u.AdditionalGids, uint32(g))
	}
	if u.Home == "" {
		u.Home = "/"
	}
	return u, nil
}

// reader returns nil (not an empty reader) for absent content, which GetExecUser treats as
// "no such file".
func reader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// userError turns GetExecUser's errors into ones that name the user or group and the file.
func userError(userSpec string, passwd, group []byte, err error) error {
	name, grp, _ := strings.Cut(userSpec, ":")
	switch {
	case errors.Is(err, user.ErrRange):
		return fmt.Errorf("resolve user %q: %w", userSpec, err)
	case errors.Is(err, user.ErrNoPasswdEntries) && passwd == nil:
		return fmt.Errorf("resolve user %q: the image has no /etc/passwd, so user %q cannot be resolved (use a numeric uid)", userSpec, name)
	case errors.Is(err, user.ErrNoPasswdEntries):
		return fmt.Errorf("resolve user %q: the image has no such user %q in /etc/passwd", userSpec, name)
	case errors.Is(err, user.ErrNoGroupEntries) && group == nil:
		return fmt.Errorf("resolve user %q: the image has no /etc/group, so group %q cannot be resolved (use a numeric gid)", userSpec, grp)
	case errors.Is(err, user.ErrNoGroupEntries):
		return fmt.Errorf("resolve user %q: the image has no such group %q in /etc/group", userSpec, grp)
	}
	return fmt.Errorf("resolve user %q: %w", userSpec, err)
}
