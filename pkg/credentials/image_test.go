package credentials

import "testing"

// An image is read once into both readings: the registry's reference (defaults
// filled in) and the kubelet's repository (no tag, no digest).
func TestParseImage(t *testing.T) {
	for given, want := range map[string][2]string{
		"ubuntu:22.04": {"index.docker.io/library/ubuntu:22.04", "docker.io/library/ubuntu"},
		"localhost:5000/b/app@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": {"localhost:5000/b/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "localhost:5000/b/app"},
		"quay.io/x/y": {"quay.io/x/y:latest", "quay.io/x/y"},
	} {
		img, err := ParseImage(given)
		if err != nil {
			t.Fatalf("%s: %v", given, err)
		}
		if img.Ref.Name() != want[0] || img.Repository != want[1] || img.String() != given {
			t.Errorf("%s: ref %s, repository %s", given, img.Ref.Name(), img.Repository)
		}
	}
	if _, err := ParseImage("Not A/Valid:Image:!"); err == nil {
		t.Error("an invalid reference was read")
	}
}
