package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/execguard/execguard/internal/safefile"
)

// jsonDir keeps one JSON document per id in a directory of the state dir:
// <dir>/<id>.json, each written atomically. Pins and facts are such
// directories.
type jsonDir struct {
	d   *Dir
	dir string
}

// maxDoc bounds a pin or facts file: they hold ids, labels and annotations.
const maxDoc = 1 << 20

func (j jsonDir) rel(id string) (string, error) {
	if err := SafeName(id); err != nil {
		return "", fmt.Errorf("id: %w", err)
	}
	return join(j.dir, id+".json"), nil
}

func (j jsonDir) write(id string, v any) error {
	rel, err := j.rel(id)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return j.d.writeFile(rel, b, 0o600)
}

// read decodes the document of id into v; the error wraps os.ErrNotExist
// when there is none.
func (j jsonDir) read(id string, v any) error {
	rel, err := j.rel(id)
	if err != nil {
		return err
	}
	b, err := j.d.readFile(rel, maxDoc)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: damaged: %w", j.d.abs(rel), err)
	}
	return nil
}

func (j jsonDir) delete(id string) error {
	rel, err := j.rel(id)
	if err != nil {
		return err
	}
	return j.d.remove(rel)
}

// ids lists the ids that have a document.
func (j jsonDir) ids() ([]string, error) {
	ents, err := j.d.list(j.dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	var errs []error
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.name, ".json")
		if !ok || safefile.IsTemp(e.name) {
			continue
		}
		if SafeName(id) != nil {
			errs = append(errs, untrusted(j.d.abs(join(j.dir, e.name)), "not a name execguard writes"))
			continue
		}
		ids = append(ids, id)
	}
	return ids, errors.Join(errs...)
}
