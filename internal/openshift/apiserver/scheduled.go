package apiserver

import (
	"context"
	"strings"
	"sync"
	"time"

	imagev1 "github.com/openshift/api/image/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// DefaultImportInterval is how often a scheduled tag is imported again:
// OpenShift's default.
const DefaultImportInterval = 15 * time.Minute

// RunScheduledImports imports every scheduled spec tag (oc tag --scheduled, oc
// import-image --scheduled) again once interval has passed since its last import,
// until ctx ends: the tag moves when its source did, and a failure is the tag's
// condition until an import succeeds. Every tag is due when this starts. Aliases
// (oc tag --alias) are moved after their source at each pass, every interval/10
// (between a second and a minute).
func (s *Server) RunScheduledImports(ctx context.Context, interval time.Duration) {
	last := &sync.Map{}
	period := min(max(interval/10, time.Second), time.Minute)
	wait.UntilWithContext(ctx, func(ctx context.Context) { s.importDue(ctx, interval, last) }, period)
}

func (s *Server) importDue(ctx context.Context, interval time.Duration, last *sync.Map) {
	stored, _, err := s.storedStreams(ctx, "")
	if err != nil {
		s.Log.Warn("listing image streams for scheduled imports", "err", err)
		return
	}
	now := time.Now()
	byName := map[string]*imageapi.ImageStream{}
	for i := range stored {
		byName[stored[i].Namespace+"/"+stored[i].Name] = &stored[i]
	}
	for i := range stored {
		is := &stored[i]
		for _, t := range is.Spec.Tags {
			if aliasMoved(is, t, byName) {
				if err := s.followSpecTag(ctx, is, t); err != nil {
					s.Log.Info("following an aliased tag failed", "imagestream", is.Namespace+"/"+is.Name, "tag", t.Name, "err", err)
				}
				continue
			}
			if !t.ImportPolicy.Scheduled || t.From == nil || t.From.Kind != "DockerImage" {
				continue
			}
			key := string(is.UID) + "/" + t.Name
			if at, ok := last.Load(key); ok && now.Sub(at.(time.Time)) < interval {
				continue
			}
			last.Store(key, now)
			if err := s.followSpecTag(ctx, is, t); err != nil {
				s.Log.Info("scheduled import failed", "imagestream", is.Namespace+"/"+is.Name, "tag", t.Name, "err", err)
			}
		}
	}
}

// aliasMoved reports whether t follows another tag of a stream in its own namespace
// (oc tag --alias) that now points elsewhere than t. Tags that follow another
// project's tag are followed when written only, where the writer's right to pull it
// is checked: a spec written straight to the stored stream is never.
func aliasMoved(is *imageapi.ImageStream, t imagev1.TagReference, streams map[string]*imageapi.ImageStream) bool {
	if t.From == nil || t.From.Kind != "ImageStreamTag" || t.Reference || (t.From.Namespace != "" && t.From.Namespace != is.Namespace) {
		return false
	}
	name, tag, _ := strings.Cut(t.From.Name, ":")
	src, ok := streams[is.Namespace+"/"+name]
	if !ok {
		return false
	}
	want, ok := src.Status.Current(tag)
	if !ok {
		return false
	}
	have, _ := is.Status.Current(t.Name)
	return have.Digest != want.Digest
}
