// Package e2e holds end-to-end tests against a real containerd (CRI, NRI,
// execguard's shim wrapping containerd's runc task service, runc) driven
// with crictl, ctr and the containerd client. They need root and run only
// with the e2e build tag:
//
//	make e2e                 # setup (cached in /var/cache/execguard), build, run
//	go test -tags e2e -v -count=1 ./test/e2e/...
//	make bench-e2e           # exec latency and pod lifecycle, runc vs execguard's shim
//	make demo                # a narrated walk through (test/demo)
//
// Each test starts its own containerd in /tmp/egNNNN
// (harness.StartExecguard: handler "runc" is containerd's runc shim;
// handlers "execguard" and "alt" are containerd-shim-execguard-v2, "alt"
// with ExecguardRuntime = "alt"; nri-execguard attached in external mode)
// and removes everything it started, also on failure:
//
//   - TestSeedReloadKeepsContainersOnTheirRuntime: reloads to changed runtime
//     args and to a config without the runtime; every call of every container
//     reaches runc with the args it was created with (a call-logging runc
//     wrapper shows them); a new container under a handler whose runtime is
//     gone is refused; GC removes a wrapper only after its last user.
//   - TestPolicy, TestCtrExecDenyRoot: denied command (crictl), root via
//     `ctr task exec --user 0` (refused before runc), privileged exec
//     (containerd client, CAP_SYS_ADMIN added) refused under "deny", clamped
//     under "clamp", forced cwd and env; each in the client's output,
//     `nri-execguard execs` and the audit log.
//   - TestLifecycle, TestMaxDurationWithoutPlugin: exit codes, max_duration
//     kills by the shim (also with the plugin stopped), records of a removed
//     pod collected.
//   - TestMaxConcurrent, TestMaxConcurrentBurst: max_concurrent, also with
//     20 execs started at once.
//   - TestRestarts, TestExecAcrossContainerdRestart: containerd restarted
//     (also in the middle of an exec), the plugin SIGKILLed and restarted,
//     containers started, exec'd and removed while the plugin is down.
//   - TestRuncHandlerOptionsReachRunc: the handler "runc" switched to the
//     shim with containerd's default options; SystemdCgroup and Root reach
//     runc.
//   - TestAuditMode: a rule in audit mode refuses and limits nothing.
//   - TestAsPod: the plugin from `make image`, run as a pod with the
//     DaemonSet's own container spec (parsed from daemonset.yaml), refuses,
//     allows and records execs, and follows a ConfigMap-style ..data swap
//     (EXECGUARD_E2E_BREAK_DAEMONSET=state|hostPID breaks the spec).
//   - TestInstaller, TestInstallerDefaultDropIn: `nri-execguard install`
//     into a temp host root that a real containerd then loads; re-run,
//     uninstall with a pod still running.
//   - TestSmoke: the environment itself, plain runc.
//
// Environment: EXECGUARD_BIN (directory with nri-execguard and
// containerd-shim-execguard-v2; default the repository's bin/, built if
// missing), EXECGUARD_REPO, EXECGUARD_CACHE, EXECGUARD_BENCH_ROUNDS,
// EXECGUARD_BENCH_NO_PLUGIN.
package e2e
