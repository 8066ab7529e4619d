package safefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// JSONDir keeps one JSON document per id in a private directory:
// <dir>/<id>.json, each written atomically. Pins and container facts are
// such directories.
type JSONDir struct {
	dir string
}

// OpenJSONDir returns the JSONDir at dir; with create it makes dir (and
// its parent, the state dir) 0700, refusing unsafe existing ones.
func OpenJSONDir(dir string, create bool) (*JSONDir, error) {
	if create {
		if err := MkdirPrivate(filepath.Dir(dir)); err != nil {
			return nil, err
		}
		if err := MkdirPrivate(dir); err != nil {
			return nil, err
		}
	}
	return &JSONDir{dir: dir}, nil
}

func (d *JSONDir) path(id string) (string, error) {
	if err := SafeName(id); err != nil {
		return "", fmt.Errorf("id: %w", err)
	}
	return filepath.Join(d.dir, id+".json"), nil
}

// Write stores v as the document of id.
func (d *JSONDir) Write(id string, v any) error {
	p, err := d.path(id)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return WriteFile(p, b, 0o600)
}

// Read decodes the document of id into v; the error wraps os.ErrNotExist
// when there is none.
func (d *JSONDir) Read(id string, v any) error {
	p, err := d.path(id)
	if err != nil {
		return err
	}
	b, err := ReadFile(p, 1<<20)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Delete removes the document of id; a missing one is not an error.
func (d *JSONDir) Delete(id string) error {
	p, err := d.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// IDs lists the ids that have a document (none when dir does not exist).
func (d *JSONDir) IDs() ([]string, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !IsTemp(e.Name()) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
