package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/c2vm/c2vm/internal/cachedir"
)

// Files in a saved VM's folder.
const (
	stateFile = "state"     // QEMU's migration stream
	metaFile  = "meta.json" // Meta
	lockFile  = "lock"      // held (flock) by the run that makes the saved VM
)

// ErrCorrupt means a saved VM's files do not match its record (truncated, changed, not the
// user's): it is not used, and Lookup has removed it.
var ErrCorrupt = errors.New("saved VM is damaged")

// Meta is a saved VM's record.
type Meta struct {
	Key     Key       `json:"key"`
	Size    int64     `json:"size"`   // the state's size in bytes
	SHA256  string    `json:"sha256"` // the state's digest
	Created time.Time `json:"created"`
	QEMU    string    `json:"qemuVersion,omitempty"` // from QMP's greeting
	// SaveTime is how long the guest was paused for the save.
	SaveTime time.Duration `json:"saveTime"`
}

// Store is the saved VMs in one cache.
type Store struct {
	Dir string // the snapshots folder
}

// Open returns the store of a cache.
func Open(cache cachedir.Dir) Store { return Store{Dir: cache.Snapshots()} }

// Saved is a saved VM found for a key.
type Saved struct {
	Dir   string
	State string // the file to restore (vm.Config.Incoming)
	Meta  Meta
}

// Lookup returns the saved VM of key. ok is false when there is none; an error wrapping
// ErrCorrupt means there was one that cannot be used (it is removed, so the next run makes a new
// one).
func (s Store) Lookup(key Key) (saved Saved, ok bool, err error) {
	dir := filepath.Join(s.Dir, key.Digest())
	meta, err := readMeta(dir)
	if errors.Is(err, os.ErrNotExist) {
		return Saved{}, false, nil
	}
	if err == nil {
		err = checkState(dir, meta, key)
	}
	if err != nil {
		os.RemoveAll(dir)
		return Saved{}, false, fmt.Errorf("%w: %s: %v", ErrCorrupt, dir, err)
	}
	return Saved{Dir: dir, State: filepath.Join(dir, stateFile), Meta: meta}, true, nil
}

func readMeta(dir string) (Meta, error) {
	var m Meta
	p := filepath.Join(dir, metaFile)
	if err := checkOwned(p); err != nil {
		return m, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: %w", p, err)
	}
	return m, nil
}

// checkState verifies the state file against its record: the key, the size, the digest.
func checkState(dir string, m Meta, key Key) error {
	if m.Key.Digest() != key.Digest() {
		return errors.New("its record is for another key")
	}
	p := filepath.Join(dir, stateFile)
	if err := checkOwned(p); err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return err
	}
	if n != m.Size {
		return fmt.Errorf("state is %d bytes, its record says %d (truncated?)", n, m.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("state's SHA-256 is %s, its record says %s", got, m.SHA256)
	}
	return nil
}

// checkOwned refuses a file that is not a regular file of the current user, or that others can
// read or write: a saved VM holds the guest's memory.
func checkOwned(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%s belongs to uid %d, not to this user", p, st.Uid)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
	}
	return nil
}

// Maker is the one run making a key's saved VM, holding its lock.
type Maker struct {
	key  Key
	dir  string
	tmp  string
	lock *os.File
}

// Begin starts making the saved VM of key. It returns nil (and no error) when there is nothing
// to make: a saved VM exists, or another run is making it now.
func (s Store) Begin(key Key) (*Maker, error) {
	dir := filepath.Join(s.Dir, key.Digest())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Chmod(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil // another run is making it
		}
		return nil, fmt.Errorf("snapshot: lock %s: %w", dir, err)
	}
	if _, err := readMeta(dir); err == nil {
		lock.Close()
		return nil, nil // made while we booted
	}
	tmp, err := os.CreateTemp(dir, stateFile+".tmp-")
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	tmp.Close() // mode 0600; QEMU's `cat >` truncates and fills it
	return &Maker{key: key, dir: dir, tmp: tmp.Name(), lock: lock}, nil
}

// Path is the file the VM is to be saved to (vm.Machine.Save).
func (m *Maker) Path() string { return m.tmp }

// Commit records the state saved to Path as the key's saved VM and releases the lock.
func (m *Maker) Commit(qemuVersion string, saveTime time.Duration) (Meta, error) {
	defer m.Abort()
	meta := Meta{Key: m.key, Created: time.Now().UTC(), QEMU: qemuVersion, SaveTime: saveTime}
	f, err := os.Open(m.tmp)
	if err != nil {
		return meta, fmt.Errorf("snapshot: %w", err)
	}
	h := sha256.New()
	meta.Size, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return meta, fmt.Errorf("snapshot: %w", err)
	}
	if meta.Size == 0 {
		return meta, fmt.Errorf("snapshot: QEMU saved nothing to %s", m.tmp)
	}
	meta.SHA256 = hex.EncodeToString(h.Sum(nil))
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return meta, fmt.Errorf("snapshot: %w", err)
	}
	if err := os.Rename(m.tmp, filepath.Join(m.dir, stateFile)); err != nil {
		return meta, fmt.Errorf("snapshot: %w", err)
	}
	mt, err := os.CreateTemp(m.dir, metaFile+".tmp-")
	if err != nil {
		return meta, fmt.Errorf("snapshot: %w", err)
	}
	_, err = mt.Write(append(data, '\n'))
	if cerr := mt.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(mt.Name(), filepath.Join(m.dir, metaFile)) // the record last: it makes the VM usable
	}
	if err != nil {
		os.Remove(mt.Name())
		return meta, fmt.Errorf("snapshot: %w", err)
	}
	return meta, nil
}

// Abort drops an unfinished save and releases the lock; after Commit it only releases the lock.
func (m *Maker) Abort() {
	os.Remove(m.tmp)
	if m.lock != nil {
		m.lock.Close()
		m.lock = nil
	}
}

// List returns the saved VMs in the store, newest first; folders without a readable record
// (being made, or damaged) are left out.
func (s Store) List() ([]Saved, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	var out []Saved
	for _, e := range ents {
		dir := filepath.Join(s.Dir, e.Name())
		if m, err := readMeta(dir); err == nil {
			out = append(out, Saved{Dir: dir, State: filepath.Join(dir, stateFile), Meta: m})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Meta.Created.After(out[j].Meta.Created) })
	return out, nil
}
