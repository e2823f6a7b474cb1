package tokenserver

import (
	"fmt"
	"slices"
	"strings"

	"github.com/distribution/reference"
)

// Scope is one resource and the actions asked for it, from the Docker token-auth
// spec's "scope" parameter: type[(class)]:name:action[,action…].
type Scope struct {
	Type, Class, Name string
	Actions           []string
}

func (s Scope) String() string {
	t := s.Type
	if s.Class != "" {
		t += "(" + s.Class + ")"
	}
	return t + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// ScopeError is a scope that cannot be honoured; Code is the distribution error code.
type ScopeError struct {
	Scope, Code, Reason string
}

func (e *ScopeError) Error() string { return fmt.Sprintf("scope %q: %s", e.Scope, e.Reason) }

var repositoryActions = []string{"pull", "push", "delete", "*"}

// ParseScopes reads every scope of the request's scope parameters (each may hold
// several, space-separated).
func ParseScopes(params []string) ([]Scope, error) {
	var out []Scope
	for _, p := range params {
		for _, raw := range strings.Fields(p) {
			s, err := ParseScope(raw)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// ParseScope reads one scope. The name may itself contain colons (host:port/repo):
// the type ends at the first colon, the actions start after the last.
func ParseScope(raw string) (Scope, error) {
	typ, rest, ok := strings.Cut(raw, ":")
	i := strings.LastIndexByte(rest, ':')
	if !ok || i < 0 {
		return Scope{}, &ScopeError{raw, "UNSUPPORTED", "want type:name:actions"}
	}
	s := Scope{Type: typ, Name: rest[:i]}
	if open := strings.IndexByte(typ, '('); open >= 0 {
		if !strings.HasSuffix(typ, ")") || open == 0 {
			return Scope{}, &ScopeError{raw, "UNSUPPORTED", "malformed resource class"}
		}
		s.Type, s.Class = typ[:open], typ[open+1:len(typ)-1]
	}
	actions := rest[i+1:]
	if actions == "" {
		return Scope{}, &ScopeError{raw, "UNSUPPORTED", "no actions"}
	}
	s.Actions = strings.Split(actions, ",")
	switch s.Type {
	case "repository":
		if _, err := reference.WithName(s.Name); err != nil || len(s.Name) > reference.NameTotalLengthMax {
			return Scope{}, &ScopeError{raw, "NAME_INVALID", "invalid repository name"}
		}
		for _, a := range s.Actions {
			if !slices.Contains(repositoryActions, a) {
				return Scope{}, &ScopeError{raw, "UNSUPPORTED", fmt.Sprintf("unknown action %q (want pull, push, delete or *)", a)}
			}
		}
	case "registry":
		if s.Name != "catalog" || len(s.Actions) != 1 || s.Actions[0] != "*" {
			return Scope{}, &ScopeError{raw, "UNSUPPORTED", "the only registry scope is registry:catalog:*"}
		}
	default:
		return Scope{}, &ScopeError{raw, "UNSUPPORTED", fmt.Sprintf("unknown resource type %q", s.Type)}
	}
	return s, nil
}
