package credprovider

import (
	"bytes"
	"strconv"
	"text/template"
)

// PluginName is the plugin's binary name in the kubelet's
// --image-credential-provider-bin-dir, and its name in the CredentialProviderConfig.
const PluginName = "pullgate-credential-provider"

// Audience is the audience of the service-account tokens the kubelet requests for the
// plugin: the registry's token service accepts it.
const Audience = "pullgate-registry"

// KubeletConfig is the kubelet's CredentialProviderConfig for the plugin, for the
// integrated registry's hosts. args go before the plugin's own flags (e.g.
// "credential-provider" when the bin dir holds the full pullgate binary).
//
// The cache is per token (cacheType: Token), not per service account: the token the
// plugin returns is bound to the pod, so cached for the account it would outlive its
// pod and be refused for the account's next pod.
func KubeletConfig(hosts []string, args ...string) []byte {
	for _, h := range hosts {
		args = append(args, "--registry-host", h)
	}
	var out bytes.Buffer
	if err := kubeletConfig.Execute(&out, struct {
		Name, Audience string
		Hosts, Args    []string
		APIVersion     string
	}{PluginName, Audience, hosts, args, APIVersion}); err != nil {
		panic(err) // the template and its data are fixed
	}
	return out.Bytes()
}

var kubeletConfig = template.Must(template.New("config").Funcs(template.FuncMap{"list": quoteList}).Parse(
	`apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: {{.Name}}
    matchImages: {{list .Hosts}}
    defaultCacheDuration: 1m
    apiVersion: {{.APIVersion}}
    args: {{list .Args}}
    tokenAttributes:
      serviceAccountTokenAudience: {{.Audience}}
      requireServiceAccount: true
      cacheType: Token
`))

// quoteList is a YAML flow sequence of quoted strings.
func quoteList(items []string) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, s := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(s))
	}
	b.WriteByte(']')
	return b.String()
}
