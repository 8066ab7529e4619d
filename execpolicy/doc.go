// Package execpolicy decides every exec into a container: allow it as asked,
// allow it adjusted (a rewritten OCI process), or refuse it with a reason
// naming the rule that decided. It also keeps the exec records and the
// container facts that decisions and the exec lifecycle rely on.
package execpolicy
