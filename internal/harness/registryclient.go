package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"pullgate.dev/pullgate/internal/registry/imageapi"
)

// RegistryClient speaks the distribution API to one repository of the integrated
// registry as the holder of a token, request by request, for tests that need to
// cancel a request half way or write what no client writes.
type RegistryClient struct {
	base string // http://host/v2/<repository>
	http *http.Client
}

// RegistryClient logs in to repository (namespace/name) with token, asking for
// pull, push and delete.
func (e *Env) RegistryClient(ctx context.Context, repository, token string) (*RegistryClient, error) {
	repo, err := name.NewRepository(e.RegistryHost + "/" + repository)
	if err != nil {
		return nil, err
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, authn.FromConfig(authn.AuthConfig{Username: "pullgate", Password: token}),
		http.DefaultTransport, []string{repo.Scope("pull,push,delete")})
	if err != nil {
		return nil, err
	}
	return &RegistryClient{base: "http://" + e.RegistryHost + "/v2/" + repository, http: &http.Client{Transport: rt}}, nil
}

func (c *RegistryClient) do(ctx context.Context, method, path, contentType string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

// Manifest returns the manifest ref names and its media type.
func (c *RegistryClient) Manifest(ctx context.Context, ref string) ([]byte, string, error) {
	resp, data, err := c.do(ctx, http.MethodGet, c.base+"/manifests/"+ref, "", nil)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET manifest %s: %s %s", ref, resp.Status, data)
	}
	return data, resp.Header.Get("Content-Type"), nil
}

// PutManifest stores manifest under ref (a tag or its digest).
func (c *RegistryClient) PutManifest(ctx context.Context, ref, mediaType string, manifest []byte) error {
	resp, data, err := c.do(ctx, http.MethodPut, c.base+"/manifests/"+ref, mediaType, manifest)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT manifest %s: %s %s", ref, resp.Status, data)
	}
	return nil
}

// Delete deletes ref: a tag, or a manifest by digest.
func (c *RegistryClient) Delete(ctx context.Context, ref string) error {
	resp, data, err := c.do(ctx, http.MethodDelete, c.base+"/manifests/"+ref, "", nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("DELETE manifest %s: %s %s", ref, resp.Status, data)
	}
	return nil
}

// PutBlob uploads content (POST, then PUT with its digest) and returns its digest.
func (c *RegistryClient) PutBlob(ctx context.Context, content []byte) (digest.Digest, error) {
	d := digest.FromBytes(content)
	resp, data, err := c.do(ctx, http.MethodPost, c.base+"/blobs/uploads/", "", nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST upload: %s %s", resp.Status, data)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", err
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	resp, data, err = c.do(ctx, http.MethodPut, loc.String(), "application/octet-stream", content)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("PUT upload: %s %s", resp.Status, data)
	}
	return d, nil
}

// AbandonUpload starts an upload, sends content, and never finishes it, as a killed
// client would; it returns where the upload would go on.
func (c *RegistryClient) AbandonUpload(ctx context.Context, content []byte) (string, error) {
	loc, err := c.StartUpload(ctx)
	if err != nil {
		return "", err
	}
	resp, data, err := c.do(ctx, http.MethodPatch, loc, "application/octet-stream", content)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("PATCH upload: %s %s", resp.Status, data)
	}
	next, err := resp.Location()
	if err != nil {
		return "", err
	}
	return next.String(), nil
}

// StartUpload starts an upload and returns where its data goes.
func (c *RegistryClient) StartUpload(ctx context.Context) (string, error) {
	resp, data, err := c.do(ctx, http.MethodPost, c.base+"/blobs/uploads/", "", nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST upload: %s %s", resp.Status, data)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", err
	}
	return loc.String(), nil
}

// PatchStreamed sends body to the upload at location as one PATCH of unknown length
// (chunked), as docker does, and returns the answer's status and body.
func (c *RegistryClient) PatchStreamed(ctx context.Context, location string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, location, io.NopCloser(body))
	if err != nil {
		return 0, nil, err
	}
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// OpenBlob starts downloading blob d; the caller reads it at its own pace.
func (c *RegistryClient) OpenBlob(ctx context.Context, d string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/blobs/"+d, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET blob %s: %s", d, resp.Status)
	}
	return resp.Body, nil
}

// Tags returns every tag the registry serves, with the digest it answers for it.
func (c *RegistryClient) Tags(ctx context.Context) (map[string]string, error) {
	resp, data, err := c.do(ctx, http.MethodGet, c.base+"/tags/list?n=10000", "", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return map[string]string{}, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tags list: %s %s", resp.Status, data)
	}
	var list struct{ Tags []string }
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, err
	}
	tags := map[string]string{}
	for _, tag := range list.Tags {
		resp, _, err := c.do(ctx, http.MethodHead, c.base+"/manifests/"+url.PathEscape(tag), "", nil)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("tag %s is listed but its manifest is %s", tag, resp.Status)
		}
		tags[tag] = resp.Header.Get("Docker-Content-Digest")
	}
	return tags, nil
}

// StreamTags returns the tags ImageStream namespace/name records, each with its
// newest digest, and the stream's status as kubectl would print it.
func (e *Env) StreamTags(ctx context.Context, namespace, name string) (map[string]string, *imageapi.ImageStream, error) {
	dyn, err := dynamic.NewForConfig(e.AdminConfig)
	if err != nil {
		return nil, nil, err
	}
	obj, err := dyn.Resource(imageapi.GVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	var is imageapi.ImageStream
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &is); err != nil {
		return nil, nil, err
	}
	tags := map[string]string{}
	for _, t := range is.Status.Tags {
		if len(t.Items) > 0 {
			tags[t.Tag] = t.Items[0].Digest
		}
	}
	return tags, &is, nil
}

// StreamDiff says how ImageStream namespace/name and the tags the registry serves
// (read with c) differ; "" when they do not.
func (e *Env) StreamDiff(ctx context.Context, c *RegistryClient, namespace, name string) string {
	served, err := c.Tags(ctx)
	if err != nil {
		return err.Error()
	}
	recorded, _, err := e.StreamTags(ctx, namespace, name)
	if err != nil {
		return err.Error()
	}
	var diff []string
	for tag, d := range recorded {
		if served[tag] != d {
			diff = append(diff, fmt.Sprintf("tag %s: imagestream %s, registry %q", tag, d, served[tag]))
		}
	}
	for tag, d := range served {
		if _, ok := recorded[tag]; !ok {
			diff = append(diff, fmt.Sprintf("tag %s: registry %s, not in the imagestream", tag, d))
		}
	}
	sort.Strings(diff)
	return strings.Join(diff, "\n")
}
