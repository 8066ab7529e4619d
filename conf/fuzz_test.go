package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// fuzzSeeds are the configs the project shows: the README's TOML
// examples, the deployed configs and the full test config.
func fuzzSeeds(tb testing.TB) [][]byte {
	seeds := [][]byte{[]byte(full), manyRules(3)}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllSubmatch(readme, -1) {
		seeds = append(seeds, m[1])
	}
	for _, p := range []string{"deploy/config.toml", "deploy/kustomize/config.toml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	if len(seeds) < 6 {
		tb.Fatalf("only %d seeds: did the README lose its examples?", len(seeds))
	}
	return seeds
}

// FuzzLoad: the loader never panics; a refusal is a list of problems at
// positions in the file; the same file always gets the same answer; and a
// config it accepts compiles, and means the same once written back as
// TOML: it is accepted again, with the same snapshot.
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.toml", data)
		_, again := Parse("f.toml", data)
		if fmt.Sprint(err) != fmt.Sprint(again) {
			t.Fatalf("two answers:\n%v\n--\n%v", err, again)
		}
		if err != nil {
			probs := Problems(err)
			if len(probs) == 0 {
				t.Fatalf("refused without a problem: %v", err)
			}
			lines := strings.Count(string(data), "\n") + 1
			for _, p := range probs {
				if p.File != "f.toml" || p.Line < 1 || p.Col < 1 || p.Line > lines {
					t.Fatalf("problem at no place in the file: %v", p)
				}
			}
			return
		}
		s, err := Compile(c)
		if err != nil {
			t.Fatalf("accepted but does not compile: %v", err)
		}
		out, err := toml.Marshal(fileLayout{Config: c, Exec: execTable{c.Exec, c.ExecSettings}})
		if err != nil {
			t.Fatalf("accepted but cannot be written back: %v", err)
		}
		c2, err := Parse("back.toml", out)
		if err != nil {
			t.Fatalf("written back, refused:\n%s\n%v", out, err)
		}
		s2, err := Compile(c2)
		if err != nil || s2.Digest != s.Digest {
			b1, _ := s.Encode()
			b2, _ := s2.Encode()
			t.Fatalf("written back, another snapshot (%v):\n%s\n%s", err, b1, b2)
		}
	})
}
