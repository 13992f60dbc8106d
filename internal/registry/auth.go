package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// dockerConfig is the part of docker's config.json that holds credentials.
type dockerConfig struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
	CredsStore  string            `json:"credsStore"`
	CredHelpers map[string]string `json:"credHelpers"`
}

// configPath is $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
func (c *Client) configPath() string {
	if c.opts.DockerConfig != "" {
		return c.opts.DockerConfig
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".docker", "config.json")
}

// credentials returns the user name and secret for host, as docker would use them: the host's
// credential helper, else the credentials store, else the auths entry. A user name of "" with a
// secret is an identity token. No config or no entry means anonymous access.
func (c *Client) credentials(host string) (string, string, error) {
	if host == "registry-1.docker.io" {
		host = "docker.io"
	}
	data, err := os.ReadFile(c.configPath())
	if errors.Is(err, os.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("docker config: %w", err)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", "", fmt.Errorf("docker config %s: %w", c.configPath(), err)
	}
	if helper := cfg.CredHelpers[host]; helper != "" {
		return credentialHelper(helper, serverURL(host))
	}
	if cfg.CredsStore != "" {
		u, s, err := credentialHelper(cfg.CredsStore, serverURL(host))
		if err != nil || u != "" || s != "" {
			return u, s, err
		}
	}
	for _, key := range authKeys(host) {
		a, ok := cfg.Auths[key]
		if !ok {
			continue
		}
		if a.IdentityToken != "" {
			return "", a.IdentityToken, nil
		}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return "", "", fmt.Errorf("docker config: auths[%q].auth is not base64", key)
			}
			user, pass, _ := strings.Cut(string(raw), ":")
			return user, pass, nil
		}
		return a.Username, a.Password, nil
	}
	return "", "", nil
}

// serverURL is what docker passes credential helpers for host.
func serverURL(host string) string {
	if host == "docker.io" {
		return "https://index.docker.io/v1/"
	}
	return host
}

// authKeys are the spellings of host that docker writes in auths.
func authKeys(host string) []string {
	keys := []string{host, "https://" + host, "http://" + host, "https://" + host + "/v1/", "https://" + host + "/v2/"}
	if host == "docker.io" {
		keys = append([]string{"https://index.docker.io/v1/", "index.docker.io"}, keys...)
	}
	return keys
}

// credentialHelper runs `docker-credential-NAME get` as docker does.
func credentialHelper(name, server string) (string, string, error) {
	cmd := exec.Command("docker-credential-"+name, "get")
	cmd.Stdin = strings.NewReader(server)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String() + " " + errb.String())
		if strings.Contains(msg, "credentials not found") {
			return "", "", nil
		}
		return "", "", fmt.Errorf("credential helper docker-credential-%s for %s: %v %s", name, server, err, msg)
	}
	var resp struct{ Username, Secret string }
	if err := json.Unmarshal(out.Bytes(), &resp); err != nil {
		return "", "", fmt.Errorf("credential helper docker-credential-%s: %w", name, err)
	}
	if resp.Username == "<token>" {
		return "", resp.Secret, nil
	}
	return resp.Username, resp.Secret, nil
}
