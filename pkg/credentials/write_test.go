package credentials

import (
	"testing"
)

// What `docker login quay.io -u u -p pa` and `podman login` write into a new file.
const freshLogin = "{\n\t\"auths\": {\n\t\t\"quay.io\": {\n\t\t\t\"auth\": \"dTpwYQ==\"\n\t\t}\n\t}\n}"

func TestSetAuthNewFileMatchesDockerAndPodman(t *testing.T) {
	for _, flavor := range []Flavor{Docker, Podman} {
		got, err := SetAuth(nil, "quay.io", Credential{Username: "u", Password: "pa"}, flavor)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != freshLogin {
			t.Errorf("flavor %d wrote\n%s\nwant\n%s", flavor, got, freshLogin)
		}
	}
}

func TestSetAuthEmailOnlyForDocker(t *testing.T) {
	c := Credential{Username: "u", Password: "pa", Email: "you@example.com"}
	docker, _ := SetAuth(nil, "quay.io", c, Docker)
	want := "{\n\t\"auths\": {\n\t\t\"quay.io\": {\n\t\t\t\"auth\": \"dTpwYQ==\",\n\t\t\t\"email\": \"you@example.com\"\n\t\t}\n\t}\n}"
	if string(docker) != want {
		t.Errorf("docker wrote\n%s", docker)
	}
	podman, _ := SetAuth(nil, "quay.io", c, Podman)
	if string(podman) != freshLogin {
		t.Errorf("podman wrote\n%s", podman)
	}
}

func TestSetAuthKeepsEverythingElse(t *testing.T) {
	existing := []byte(`{"auths":{"b.io":{"auth":"eDp5"},"quay.io":{"auth":"b2xkOm9sZA=="}},"credHelpers":{"gcr.io":"gcloud"},"psFormat":"table {{.ID}}"}`)
	got, err := SetAuth(existing, "quay.io", Credential{Username: "u", Password: "pa"}, Docker)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n\t\"auths\": {\n\t\t\"b.io\": {\n\t\t\t\"auth\": \"eDp5\"\n\t\t},\n\t\t\"quay.io\": {\n\t\t\t\"auth\": \"dTpwYQ==\"\n\t\t}\n\t},\n\t\"credHelpers\": {\n\t\t\"gcr.io\": \"gcloud\"\n\t},\n\t\"psFormat\": \"table {{.ID}}\"\n}"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	added, err := SetAuth([]byte(`{"psFormat":"x"}`), "r.io:5000", Credential{IdentityToken: "tok"}, Docker)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(added, fileSrc)
	if err != nil || len(cfg.Entries) != 1 || cfg.Entries[0].IdentityToken != "tok" {
		t.Errorf("round trip: %+v %v\n%s", cfg, err, added)
	}
}

func TestSetAuthRefusesBrokenFile(t *testing.T) {
	if _, err := SetAuth([]byte(`{"auths":`), "quay.io", Credential{Username: "u"}, Docker); err == nil {
		t.Error("a broken file was rewritten")
	}
}
