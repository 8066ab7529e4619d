// Package e2e holds end-to-end tests against a real containerd. They need
// root and run only with the e2e build tag:
//
//	bash test/e2e/setup.sh   # once; cached in /var/cache/execguard
//	go test -tags e2e -v -count=1 ./test/e2e/...
package e2e
