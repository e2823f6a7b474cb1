package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	imagev1 "github.com/openshift/api/image/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"pullgate.dev/pullgate/internal/openshift/images"
	"pullgate.dev/pullgate/internal/registry/imageapi"
)

var imageStreamImportsResource = schema.GroupResource{Group: "image.openshift.io", Resource: "imagestreamimports"}

// maxRepositoryTags bounds an import of a whole repository (oc import-image --all),
// as OpenShift's does.
const maxRepositoryTags = 50

// imported is one image an import asked for, and what came of it.
type imported struct {
	tag    string
	spec   imagev1.TagReference
	event  imageapi.TagEvent
	image  imagev1.Image
	err    error
	status metav1.Status
}

// createImageStreamImport is oc import-image: each image read from its registry
// with the project's pull secrets and, unless it is a dry run, recorded in the
// stream (made if need be) as a spec tag from DockerImage and the tag's image.
func (s *Server) createImageStreamImport(w http.ResponseWriter, r *http.Request) {
	ns := r.PathValue("ns")
	var isi imagev1.ImageStreamImport
	if err := decodeBody(w, r, &isi); err != nil {
		writeStatus(w, err)
		return
	}
	if err := validateImport(&isi); err != nil {
		writeStatus(w, err)
		return
	}
	results := s.runImports(r.Context(), ns, &isi)
	out := isi
	out.TypeMeta = metav1.TypeMeta{Kind: "ImageStreamImport", APIVersion: "image.openshift.io/v1"}
	out.Namespace = ns
	if isi.Spec.Repository != nil {
		out.Status.Repository = &imagev1.RepositoryImportStatus{Status: metav1.Status{Status: metav1.StatusSuccess}}
	}
	for _, res := range results {
		st := imagev1.ImageImportStatus{Tag: res.tag, Status: res.status}
		if res.err == nil {
			img := res.image
			st.Image = &img
		}
		if isi.Spec.Repository != nil {
			out.Status.Repository.Images = append(out.Status.Repository.Images, st)
			if res.err != nil {
				out.Status.Repository.Status = res.status
			}
			continue
		}
		out.Status.Images = append(out.Status.Images, st)
	}
	if isi.Spec.Import {
		stream, err := s.recordImports(r.Context(), ns, isi.Name, results)
		if err != nil {
			writeStatus(w, err)
			return
		}
		if stream != nil {
			is := s.toImageStream(stream)
			out.Status.Import = &is
		}
	}
	writeJSON(w, http.StatusCreated, out)
}

func validateImport(isi *imagev1.ImageStreamImport) error {
	var causes []metav1.StatusCause
	check := func(field string, from corev1.ObjectReference) {
		if from.Kind != "DockerImage" {
			causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: field + ".kind", Message: "only DockerImage can be imported"})
			return
		}
		if msg := validateFrom(from); msg != "" {
			causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: field + ".name", Message: msg})
		}
	}
	for i, img := range isi.Spec.Images {
		check(fmt.Sprintf("spec.images[%d].from", i), img.From)
		if img.To != nil {
			if err := validateTagName(img.To.Name); err != nil {
				causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: fmt.Sprintf("spec.images[%d].to.name", i), Message: err.Error()})
			}
		}
	}
	if isi.Spec.Repository != nil {
		check("spec.repository.from", isi.Spec.Repository.From)
	}
	if len(isi.Spec.Images) == 0 && isi.Spec.Repository == nil {
		causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueRequired, Field: "spec.images", Message: "name an image to import (or spec.repository)"})
	}
	if len(causes) > 0 {
		return invalid(imageStreamImportsResource, "ImageStreamImport", isi.Name, causes)
	}
	return nil
}

// runImports reads every image isi asks for.
func (s *Server) runImports(ctx context.Context, ns string, isi *imagev1.ImageStreamImport) []imported {
	var want []imported
	for _, img := range isi.Spec.Images {
		tag := "latest"
		if img.To != nil && img.To.Name != "" {
			tag = img.To.Name
		} else if ref, err := parseExternal(img.From.Name, img.ImportPolicy); err == nil && ref.Identifier() != "" && !slices.Contains([]byte(ref.Identifier()), ':') {
			tag = ref.Identifier()
		}
		from := img.From
		want = append(want, imported{tag: tag, spec: imagev1.TagReference{Name: tag, From: &from, ImportPolicy: img.ImportPolicy, ReferencePolicy: img.ReferencePolicy}})
	}
	if repo := isi.Spec.Repository; repo != nil {
		tags, err := s.repositoryTags(ctx, ns, repo)
		if err != nil {
			return []imported{{err: err, status: failure(err)}}
		}
		for _, tag := range tags {
			from := corev1.ObjectReference{Kind: "DockerImage", Name: images.TrimScheme(repo.From.Name) + ":" + tag}
			want = append(want, imported{tag: tag, spec: imagev1.TagReference{Name: tag, From: &from, ImportPolicy: repo.ImportPolicy, ReferencePolicy: repo.ReferencePolicy}})
		}
	}
	for i := range want {
		want[i].event, want[i].image, want[i].err = s.importImage(ctx, ns, want[i].spec.From.Name, want[i].spec.ImportPolicy)
		want[i].status = metav1.Status{Status: metav1.StatusSuccess}
		if want[i].err != nil {
			want[i].status = failure(want[i].err)
		}
	}
	return want
}

func failure(err error) metav1.Status {
	return metav1.Status{Status: metav1.StatusFailure, Message: err.Error(), Reason: metav1.StatusReason(failureReason(err)), Code: http.StatusUnprocessableEntity}
}

// repositoryTags are the tags of the repository an --all import names, the first
// maxRepositoryTags in order.
func (s *Server) repositoryTags(ctx context.Context, ns string, repo *imagev1.RepositoryImportSpec) ([]string, error) {
	ref, err := parseExternal(repo.From.Name, repo.ImportPolicy)
	if err != nil {
		return nil, err
	}
	creds, err := images.ProjectCredentials(ctx, s.Client, ns, ref.Context().String())
	if err != nil {
		return nil, err
	}
	tags, err := s.Images.Tags(ctx, ref.Context(), images.FirstCredential(creds))
	if err != nil {
		return nil, &images.ImportError{From: ref.Context().String(), Credential: "the project's first credential for it", Err: err}
	}
	slices.Sort(tags)
	if len(tags) > maxRepositoryTags {
		tags = tags[:maxRepositoryTags]
	}
	return tags, nil
}

// recordImports writes the imports that succeeded (and scheduled ones that did not,
// to be retried) into stream name, made if there is none.
func (s *Server) recordImports(ctx context.Context, ns, name string, results []imported) (*imageapi.ImageStream, error) {
	if !slices.ContainsFunc(results, func(res imported) bool { return res.err == nil || res.spec.ImportPolicy.Scheduled }) {
		// Nothing to record: a stream that is not there is not made for nothing.
		stored, err := s.streams().Read(ctx, ns, name)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return stored, err
	}
	stored, _, err := s.streamForTag(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	err = retryConflicts(func() error {
		now, err := s.streams().Read(ctx, ns, name)
		if err != nil {
			return err
		}
		spec := now.Spec
		for _, res := range results {
			if res.err == nil || res.spec.ImportPolicy.Scheduled {
				spec.Tags = withTag(spec.Tags, res.spec, now.Generation+1)
			}
		}
		stored, err = s.streams().UpdateSpec(ctx, now, now.ObjectMeta, spec)
		return err
	})
	if err != nil {
		return nil, err
	}
	repo := s.repository(stored)
	for _, res := range results {
		var err error
		switch {
		case res.err == nil:
			ev := res.event
			ev.Generation = stored.Generation
			if err = s.streams().RecordTag(ctx, ns, name, string(stored.UID), repo, res.tag, ev); err == nil {
				err = s.streams().SetTagCondition(ctx, ns, name, string(stored.UID), res.tag, nil)
			}
		case res.spec.ImportPolicy.Scheduled:
			err = s.streams().SetTagCondition(ctx, ns, name, string(stored.UID), res.tag, &imagev1.TagEventCondition{Type: imagev1.ImportSuccess, Status: corev1.ConditionFalse,
				LastTransitionTime: metav1.Now(), Reason: failureReason(res.err), Message: res.err.Error(), Generation: stored.Generation})
		}
		if err != nil {
			return nil, err
		}
	}
	now, err := s.streams().Read(ctx, ns, name)
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(imageStreamsResource, name)
	}
	return now, err
}
