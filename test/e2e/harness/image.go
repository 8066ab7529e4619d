//go:build e2e

package harness

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
)

// PluginImage is the reference the e2e tests import the nri-execguard
// image as.
const PluginImage = "ghcr.io/execguard/nri-execguard:e2e"

// BuildPluginImage builds the nri-execguard image from BinDir's binaries
// into dir the way `make image` does (internal/ociimage/mkimage) and
// returns the tar's path.
func BuildPluginImage(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin, err := BinDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "nri-execguard-image.tar")
	cmd := exec.Command("go", "run", "./internal/ociimage/mkimage", "-bin", bin, "-ref", PluginImage,
		"-version", "e2e", "-arch", runtime.GOARCH, "-license-file", filepath.Join(root, "LICENSE"), "-o", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the image: %w\n%s", err, b)
	}
	return out, nil
}

// ImportImage imports an image tar into the instance's k8s.io namespace.
func (e *Env) ImportImage(tar string) error {
	if _, stderr, err := e.Ctr("images", "import", "--snapshotter", "overlayfs", tar); err != nil {
		return fmt.Errorf("import %s: %w: %s", tar, err, stderr)
	}
	return nil
}
