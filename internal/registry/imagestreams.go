package registry

import (
	"context"
	"fmt"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	repositorymiddleware "github.com/distribution/distribution/v3/registry/middleware/repository"
	"github.com/opencontainers/go-digest"

	"pullgate.dev/pullgate/internal/registryauth"
)

const (
	streamsMiddleware  = "pullgate-imagestreams"
	streamsOptionRepos = "repositories"
	streamsOptionHost  = "host"
)

func init() {
	if err := repositorymiddleware.Register(streamsMiddleware, newStreamsMiddleware); err != nil {
		panic(err)
	}
}

func newStreamsMiddleware(_ context.Context, repo distribution.Repository, options map[string]any) (distribution.Repository, error) {
	repos, ok := options[streamsOptionRepos].(*repositories)
	if !ok {
		return nil, fmt.Errorf("%s middleware: no repositories", streamsMiddleware)
	}
	host, _ := options[streamsOptionHost].(string)
	return &streamRepository{Repository: repo, repos: repos, host: host}, nil
}

// streamRepository records every manifest PUT in the repository's ImageStream,
// synchronously: the push succeeds only once the stream says so.
type streamRepository struct {
	distribution.Repository
	repos *repositories
	host  string
}

func (r *streamRepository) Manifests(ctx context.Context, options ...distribution.ManifestServiceOption) (distribution.ManifestService, error) {
	ms, err := r.Repository.Manifests(ctx, options...)
	if err != nil {
		return nil, err
	}
	return &streamManifests{ManifestService: ms, repo: r}, nil
}

type streamManifests struct {
	distribution.ManifestService
	repo *streamRepository
}

func (m *streamManifests) Put(ctx context.Context, manifest distribution.Manifest, options ...distribution.ManifestServiceOption) (digest.Digest, error) {
	dgst, err := m.ManifestService.Put(ctx, manifest, options...)
	if err != nil {
		return dgst, err
	}
	var tag string
	for _, o := range options {
		if t, ok := o.(distribution.WithTagOption); ok {
			tag = t.Tag
		}
	}
	name := m.repo.Named().Name()
	namespace, stream, _ := registryauth.SplitRepository(name)
	mediaType, _, _ := manifest.Payload()
	uid, err := m.repo.repos.UID(ctx, name)
	if err == nil {
		err = m.repo.repos.streams.RecordTag(ctx, namespace, stream, uid, m.repo.host+"/"+name, tag, dgst.String(), mediaType)
	}
	if err != nil {
		return "", errcode.ErrorCodeUnknown.WithMessage(fmt.Sprintf("the manifest is stored but imagestream %s/%s could not be updated: %v; push again", namespace, stream, err))
	}
	return dgst, nil
}
