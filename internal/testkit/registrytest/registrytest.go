// Package registrytest runs the CNCF distribution registry (Debian's docker-registry) for tests,
// on 127.0.0.1, with TLS from a throwaway CA and htpasswd authentication when asked, and stops it
// when the test ends. No mock: the real server is the point.
//
// See docs/testing.md (the registry tier).
package registrytest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is Debian's registry server.
const Binary = "/usr/bin/docker-registry"

// Options choose how the registry serves.
type Options struct {
	TLS  bool // HTTPS with a certificate from a throwaway CA (CA in Server.CAFile)
	Auth bool // htpasswd basic auth for User:Password (implies TLS, as the registry requires)
}

// Server is a running registry.
type Server struct {
	Addr           string // 127.0.0.1:PORT
	Dir            string // its storage root is Dir/data
	CAFile         string // the CA that signed its certificate ("" without TLS)
	User, Password string // with Auth

	cmd  *exec.Cmd
	once sync.Once
}

// Missing lists what the registry tests need and this machine lacks.
func Missing() []string {
	var m []string
	for bin, pkg := range map[string]string{Binary: "docker-registry", "/usr/bin/htpasswd": "apache2-utils", "/usr/bin/openssl": "openssl", "/usr/bin/skopeo": "skopeo"} {
		if _, err := os.Stat(bin); err != nil {
			m = append(m, bin+" (Debian package "+pkg+")")
		}
	}
	return m
}

// Start starts a registry and stops it when the test ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Auth {
		o.TLS = true
	}
	dir := t.TempDir()
	s := &Server{Dir: dir, Addr: freeAddr(t)}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), s.Addr)
	if o.TLS {
		cert, key := s.makeCerts(t)
		cfg += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", cert, key)
	}
	if o.Auth {
		s.User, s.Password = "c2vm", "s3cret-pass"
		run(t, "htpasswd", "-Bbc", filepath.Join(dir, "htpasswd"), s.User, s.Password)
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: c2vm-test\n    path: %s\n", filepath.Join(dir, "htpasswd"))
	}
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logb bytes.Buffer
	cmd := exec.Command(Binary, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = &logb, &logb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", Binary, err)
	}
	s.cmd = cmd
	t.Cleanup(s.stop)
	s.wait(t, &logb)
	return s
}

func (s *Server) stop() {
	s.once.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		_ = s.cmd.Wait()
	})
}

// Stop stops the registry now (for tests of an unreachable registry).
func (s *Server) Stop() { s.stop() }

func (s *Server) wait(t testing.TB, logb *bytes.Buffer) {
	t.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool(t)}}}
	scheme := "http"
	if s.CAFile != "" {
		scheme = "https"
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(scheme + "://" + s.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s did not answer within 30s: %v\n%s", s.Addr, err, logb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) pool(t testing.TB) *x509.CertPool {
	p := x509.NewCertPool()
	if s.CAFile != "" {
		b, err := os.ReadFile(s.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		p.AppendCertsFromPEM(b)
	}
	return p
}

// makeCerts makes a CA and a certificate for 127.0.0.1 signed by it, with openssl.
func (s *Server) makeCerts(t testing.TB) (cert, key string) {
	t.Helper()
	d := s.Dir
	s.CAFile = filepath.Join(d, "ca.pem")
	cert, key = filepath.Join(d, "server.pem"), filepath.Join(d, "server.key")
	run(t, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=c2vm test CA",
		"-keyout", filepath.Join(d, "ca.key"), "-out", s.CAFile)
	run(t, "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", filepath.Join(d, "server.csr"))
	ext := filepath.Join(d, "san.ext")
	if err := os.WriteFile(ext, []byte("subjectAltName=IP:127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "openssl", "x509", "-req", "-in", filepath.Join(d, "server.csr"), "-CA", s.CAFile, "-CAkey", filepath.Join(d, "ca.key"),
		"-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert)
	return cert, key
}

// Copy puts an image into the registry with skopeo (src in skopeo's syntax, e.g.
// docker-archive:FILE or oci:DIR:TAG), as REPO:TAG.
func (s *Server) Copy(t testing.TB, src, repoTag string, extra ...string) {
	t.Helper()
	args := []string{"copy", "--quiet", "--dest-tls-verify=false"}
	if s.User != "" {
		args = append(args, "--dest-creds", s.User+":"+s.Password)
	}
	args = append(append(args, extra...), src, "docker://"+s.Addr+"/"+repoTag)
	run(t, "skopeo", args...)
}

// DockerConfig writes a docker config.json with these credentials for the registry and returns
// its directory (for $DOCKER_CONFIG).
func (s *Server) DockerConfig(t testing.TB, user, pass string) string {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, s.Addr, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
