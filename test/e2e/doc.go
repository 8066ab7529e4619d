// Package e2e holds end-to-end tests against a real containerd (CRI, NRI,
// runc shim, runc) driven with crictl, ctr and the containerd client. They
// need root and run only with the e2e build tag:
//
//	make e2e                 # setup (cached in /var/cache/execguard), build, run
//	go test -tags e2e -v -count=1 ./test/e2e/...
//	make bench-e2e           # exec latency through runc vs execguard-runtime
//	make demo                # a narrated walk through (test/demo)
//
// Each test starts its own containerd in /tmp/egNNNN (harness.StartExecguard:
// handlers "runc", "execguard" → execguard-runtime and "alt" → a link
// execguard-runtime.alt; nri-execguard attached in external mode) and
// removes everything it started, also on failure:
//
//   - TestSeedReloadKeepsContainersOnTheirRuntime: reloads to changed runtime
//     args and to a config without the runtime; every call of every container
//     reaches runc with the args it was created with (a call-logging runc
//     wrapper shows them); GC removes a wrapper only after its last user.
//   - TestPolicy: denied command (crictl), root via `ctr task exec --user 0`,
//     privileged exec (containerd client, CAP_SYS_ADMIN added) refused under
//     "deny", clamped under "clamp", forced cwd and env; each in the client's
//     output, `nri-execguard execs` and the audit log.
//   - TestLifecycle: exit codes, max_duration kills, records of a removed pod
//     collected.
//   - TestRestarts: containerd restarted, the plugin SIGKILLed and restarted,
//     containers started, exec'd and removed while the plugin is down.
//   - TestSmoke: the environment itself, plain runc.
//
// Environment: EXECGUARD_BIN (directory with nri-execguard and
// execguard-runtime; default the repository's bin/, built if missing),
// EXECGUARD_REPO, EXECGUARD_CACHE, EXECGUARD_BENCH_ROUNDS,
// EXECGUARD_BENCH_NO_PLUGIN.
package e2e
