package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"testing"
)

func TestLayoutReproducibleAndSorted(t *testing.T) {
	build := func(order []Entry) ([]byte, Result) {
		l, err := NewLayer(order, Epoch)
		if err != nil {
			t.Fatal(err)
		}
		img := Image{Ref: "example.com/x:1", Config: Config{User: "0", Entrypoint: []string{"/x"}, Labels: map[string]string{"b": "2", "a": "1"}},
			Layers: []*Layer{l}, Annotations: map[string]string{"a": "1"}}
		data, res, err := WriteLayout([]Image{img}, Options{DockerManifest: true})
		if err != nil {
			t.Fatal(err)
		}
		return data, res
	}
	es := []Entry{File("usr/bin/x", 0o755, []byte("x")), Dir("usr", 0o755), Dir("usr/bin", 0o755), Symlink("y", "usr/bin/x")}
	a, ra := build(es)
	b, rb := build([]Entry{es[3], es[2], es[0], es[1]})
	if !bytes.Equal(a, b) || ra.Manifests[0] != rb.Manifests[0] {
		t.Fatalf("entry order changed the output: %v vs %v", ra, rb)
	}

	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(Epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d", h.Name, h.ModTime, h.Uid, h.Gid)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	for _, f := range []string{"oci-layout", "index.json", "manifest.json"} {
		if files[f] == nil {
			t.Errorf("%s missing", f)
		}
	}
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != ra.Manifests[0] ||
		idx.Manifests[0].Annotations[AnnotationName] != "example.com/x:1" || idx.Manifests[0].Annotations[AnnotationRefName] != "1" {
		t.Fatalf("index: %+v", idx)
	}
	var man struct {
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(files["blobs/sha256/"+ra.Manifests[0][7:]], &man); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(files["blobs/sha256/"+man.Layers[0].Digest[7:]]))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.Equal(Epoch) || zr.Name != "" {
		t.Errorf("gzip header: mtime %v name %q", zr.ModTime, zr.Name)
	}
	var names []string
	lt := tar.NewReader(zr)
	for {
		h, err := lt.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := []string{"usr/", "usr/bin/", "usr/bin/x", "y"}
	if len(names) != len(want) {
		t.Fatalf("layer entries %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("layer entries %q, want %q", names, want)
		}
	}
}
