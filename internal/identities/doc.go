// Package identities is who pullgate's components are to the API server and the
// least each may do: the registry, its token service and the controllers (a user
// inside `pullgate up`, a service account when installed from deploy/), the node's
// extra role, and the admission policy that pins what RBAC cannot (names, types, a
// token's audience). Install writes them; manifests renders them for deploy/; the
// e2e suite impersonates each and tries to escalate.
package identities
