// Package project is what users do to projects, in one place for the CLI, the web
// console and the aggregated OpenShift API: request a project, grant and revoke a
// role in it, link and unlink a service account's secrets, and ask who may do
// something there. Each operation acts through the client it is given (the user's
// own, or pullgate's after the API server authorized the user) and returns what it
// changed, what was already so and what it warns of; none prints. The words of a
// message a user reads are the caller's (oc's, in the CLI).
package project
