package kmod

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteDep writes a modules.dep for mods in depmod's format: one line per module,
// "path: dep1path dep2path", listing all transitive dependencies with the ones to load last first
// (so loading from the end of the list backwards works, as modprobe does). A module without
// dependencies gets "path:" with no trailing space, which u-root's kmodule needs. Every dependency
// must itself be in mods (Closure's output is).
func WriteDep(w io.Writer, mods []Module) error {
	byName := make(map[string]Module, len(mods))
	for _, m := range mods {
		byName[m.Name] = m
	}
	bw := bufio.NewWriter(w)
	for _, m := range mods {
		order, err := loadOrder(m, byName)
		if err != nil {
			return err
		}
		var sb strings.Builder
		sb.WriteString(m.Path)
		sb.WriteByte(':')
		for i := len(order) - 1; i >= 0; i-- {
			sb.WriteByte(' ')
			sb.WriteString(order[i])
		}
		sb.WriteByte('\n')
		if _, err := bw.WriteString(sb.String()); err != nil {
			return fmt.Errorf("write modules.dep: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write modules.dep: %w", err)
	}
	return nil
}

// loadOrder returns the paths of m's transitive dependencies, each after its own dependencies.
func loadOrder(m Module, byName map[string]Module) ([]string, error) {
	var order []string
	seen := map[string]bool{m.Name: true}
	var walk func(Module) error
	walk = func(cur Module) error {
		for _, d := range cur.Depends {
			if seen[d] {
				continue
			}
			seen[d] = true
			dm, ok := byName[d]
			if !ok {
				return fmt.Errorf("modules.dep: %s depends on %s, which is not in the module set", cur.Name, d)
			}
			if err := walk(dm); err != nil {
				return err
			}
			order = append(order, dm.Path)
		}
		return nil
	}
	return order, walk(m)
}
