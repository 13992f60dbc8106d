package kmod

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// ErrBuiltin is wrapped by Closure's error for a module that modules.builtin lists as built into
// the kernel: there is nothing to load, and callers may drop such names (see Builtin).
var ErrBuiltin = errors.New("built into the kernel")

// Closure returns the named modules plus everything they depend on, dependencies first. The order
// is deterministic: names are visited in the order given and each module's dependencies in the
// order its .modinfo lists them, depth first. Duplicates and '-'/'_' spellings collapse to one
// entry. An unknown module is an error naming it.
func Closure(modulesDir string, names []string) ([]Module, error) {
	idx, err := Index(modulesDir)
	if err != nil {
		return nil, err
	}
	c := closer{dir: modulesDir, idx: idx, state: make(map[string]int)}
	for _, n := range names {
		if err := c.visit(NormName(n), nil); err != nil {
			return nil, err
		}
	}
	return c.out, nil
}

const (
	visiting = 1
	done     = 2
)

type closer struct {
	dir   string
	idx   map[string]string
	state map[string]int
	out   []Module
}

func (c *closer) visit(name string, chain []string) error {
	switch c.state[name] {
	case done:
		return nil
	case visiting:
		return fmt.Errorf("module dependency cycle: %s -> %s", strings.Join(chain, " -> "), name)
	}
	rel, ok := c.idx[name]
	if !ok {
		return c.unknown(name, chain)
	}
	deps, err := Depends(filepath.Join(c.dir, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	c.state[name] = visiting
	for _, d := range deps {
		if err := c.visit(d, append(chain, name)); err != nil {
			return err
		}
	}
	c.state[name] = done
	c.out = append(c.out, Module{Name: name, Path: rel, Depends: deps})
	return nil
}

func (c *closer) unknown(name string, chain []string) error {
	via := ""
	if len(chain) > 0 {
		via = fmt.Sprintf(" (needed by %s)", strings.Join(chain, " <- "))
	}
	builtin, err := Builtin(c.dir)
	if err != nil {
		return err
	}
	if builtin[name] {
		return fmt.Errorf("kernel module %q%s: %w (listed in modules.builtin), nothing to load", name, via, ErrBuiltin)
	}
	return fmt.Errorf("kernel module %q%s not found in %s (no such module file; if it is built into the kernel, check modules.builtin)", name, via, c.dir)
}
