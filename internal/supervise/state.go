// Package supervise keeps c2vm's detached VMs (c2vm run -d): one supervisor process per VM (c2vm
// itself, in the role conmon or containerd-shim plays) owns QEMU, the workload's log and the VM's
// record, and survives the shell that started it. This file is the state: one directory per VM
// under the state root ($XDG_RUNTIME_DIR/c2vm, /run/c2vm for root) holding its record
// (state.json) and log (log.jsonl), found by name or ID prefix as docker finds containers.
//
// See docs/architecture.md (detached VMs).
package supervise

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// States of a VM's record.
const (
	StateCreated = "created" // the supervisor is starting it
	StateRunning = "running"
	StateExited  = "exited"
)

// Record is what c2vm knows of one detached VM.
type Record struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Bundle  string    `json:"bundle"`
	Command []string  `json:"command,omitempty"`
	Created time.Time `json:"created"`
	// Args are the run flags the supervisor boots the VM with (c2vm run's own, minus -d/--name).
	Args []string `json:"args,omitempty"`
	// Pid is the supervisor's process id (0 before it runs).
	Pid      int       `json:"pid,omitempty"`
	State    string    `json:"state"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	ExitCode int       `json:"exit_code"`
	// Error says why the VM ended without the workload's status (c2vm's or QEMU's failure).
	Error string `json:"error,omitempty"`
}

// Alive reports whether the record's supervisor process still runs.
func (r *Record) Alive() bool {
	return r.Pid > 0 && unix.Kill(r.Pid, 0) == nil
}

// Running reports whether the VM runs: its record says so and its supervisor is alive.
func (r *Record) Running() bool {
	return (r.State == StateRunning || r.State == StateCreated) && r.Alive()
}

// Status is docker ps's STATUS column: "Up 3 minutes", "Exited (0) 5 seconds ago", or "Dead" when
// the record says running but the supervisor is gone (killed, or the host rebooted).
func (r *Record) Status(now time.Time) string {
	switch {
	case r.State == StateExited:
		return fmt.Sprintf("Exited (%d) %s ago", r.ExitCode, humanDuration(now.Sub(r.Finished)))
	case !r.Alive():
		return "Dead (its supervisor process is gone)"
	case r.State == StateCreated:
		return "Created"
	}
	return "Up " + humanDuration(now.Sub(r.Started))
}

// humanDuration is docker's (go-units HumanDuration) wording for the common ranges.
func humanDuration(d time.Duration) string {
	switch s := int(d.Seconds()); {
	case s < 1:
		return "Less than a second"
	case s == 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	case d.Minutes() < 2:
		return "About a minute"
	case d.Minutes() < 60:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case d.Hours() < 2:
		return "About an hour"
	case d.Hours() < 48:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// DefaultRoot is the state root: $XDG_RUNTIME_DIR/c2vm, /run/c2vm for root, else a per-user
// directory in the temp dir.
func DefaultRoot() string {
	if os.Geteuid() == 0 {
		return "/run/c2vm"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "c2vm")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("c2vm-%d", os.Geteuid()))
}

// Store is the state root.
type Store struct{ Root string }

// Dir is the directory of the VM with the given ID.
func (s Store) Dir(id string) string { return filepath.Join(s.Root, "vms", id) }

// LogPath is the VM's log.
func (s Store) LogPath(id string) string { return filepath.Join(s.Dir(id), "log.jsonl") }

// ErrNotFound: no VM has that name or ID prefix.
var ErrNotFound = errors.New("no such VM")

// lock holds the store's lock (flock on Root/lock) while fn runs: names stay unique.
func (s Store) lock(fn func() error) error {
	if err := os.MkdirAll(filepath.Join(s.Root, "vms"), 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.Root, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return fn()
}

// Create makes a new record with a fresh ID; an empty name becomes the ID's first 12 characters.
// A name in use is refused, as docker refuses it.
func (s Store) Create(r Record) (*Record, error) {
	var b [32]byte
	rand.Read(b[:])
	r.ID = hex.EncodeToString(b[:])
	if r.Name == "" {
		r.Name = r.ID[:12]
	}
	if !validName(r.Name) {
		return nil, fmt.Errorf("invalid VM name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", r.Name)
	}
	if r.State == "" {
		r.State = StateCreated
	}
	err := s.lock(func() error {
		all, err := s.list()
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.Name == r.Name {
				return fmt.Errorf("the name %q is already in use by VM %s: remove it (c2vm rm %s) or choose another name", r.Name, o.ID[:12], r.Name)
			}
		}
		if err := os.MkdirAll(s.Dir(r.ID), 0o700); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
		return s.write(&r)
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

func validName(n string) bool {
	for i, c := range n {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || i > 0 && strings.ContainsRune("_.-", c)
		if !ok {
			return false
		}
	}
	return n != ""
}

// write replaces the record's file atomically.
func (s Store) write(r *Record) error {
	data, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir(r.ID), ".state.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir(r.ID), "state.json")); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// Update changes the record of VM id under the lock.
func (s Store) Update(id string, fn func(*Record)) (*Record, error) {
	var out *Record
	err := s.lock(func() error {
		r, err := s.read(id)
		if err != nil {
			return err
		}
		fn(r)
		out = r
		return s.write(r)
	})
	return out, err
}

func (s Store) read(id string) (*Record, error) {
	data, err := os.ReadFile(filepath.Join(s.Dir(id), "state.json"))
	if err != nil {
		return nil, fmt.Errorf("read state of %s: %w", id, err)
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read state of %s: %w", id, err)
	}
	return &r, nil
}

func (s Store) list() ([]*Record, error) {
	ents, err := os.ReadDir(filepath.Join(s.Root, "vms"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	var out []*Record
	for _, e := range ents {
		r, err := s.read(e.Name())
		if err != nil {
			continue // being created or removed
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// List returns every record, newest first.
func (s Store) List() ([]*Record, error) { return s.list() }

// Get finds a VM by exact name, exact ID or unique ID prefix.
func (s Store) Get(ref string) (*Record, error) {
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	var match []*Record
	for _, r := range all {
		if r.Name == ref || r.ID == ref {
			return r, nil
		}
		if ref != "" && strings.HasPrefix(r.ID, ref) {
			match = append(match, r)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	case 1:
		return match[0], nil
	}
	return nil, fmt.Errorf("%q matches %d VMs: give more of the ID, or the name", ref, len(match))
}

// Remove deletes a VM's record and log.
func (s Store) Remove(id string) error {
	return s.lock(func() error {
		if err := os.RemoveAll(s.Dir(id)); err != nil {
			return fmt.Errorf("remove %s: %w", id, err)
		}
		return nil
	})
}
