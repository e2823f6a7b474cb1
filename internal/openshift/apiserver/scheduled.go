package apiserver

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// DefaultImportInterval is how often a scheduled tag is imported again:
// OpenShift's default.
const DefaultImportInterval = 15 * time.Minute

// RunScheduledImports imports every scheduled spec tag (oc tag --scheduled, oc
// import-image --scheduled) again once interval has passed since its last import,
// until ctx ends: the tag moves when its source did, and a failure is the tag's
// condition until an import succeeds. Every tag is due when this starts.
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
	for i := range stored {
		is := &stored[i]
		for _, t := range is.Spec.Tags {
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
