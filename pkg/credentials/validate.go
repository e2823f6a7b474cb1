package credentials

import (
	"fmt"
	"strings"
)

// ValidateCredentialFile checks a docker config.json or Podman auth.json as the
// kubelet will read it from a pull secret: well-formed (errors name the byte), and
// with at least one registry credential.
func ValidateCredentialFile(data []byte, src Source) error {
	cfg, err := ParseDockerConfigJSON(data, src)
	if err != nil {
		return err
	}
	if len(cfg.Entries) == 0 {
		why := ""
		if len(cfg.Warnings) > 0 {
			why = ": " + strings.Join(cfg.Warnings, "; ")
		}
		return fmt.Errorf("no registry credentials in it as the kubelet reads it (an \"auths\" object with at least one entry)%s", why)
	}
	return nil
}
