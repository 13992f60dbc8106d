package registrytest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/bundle"
)

// Hostile is an in-memory registry (the pull side of the distribution API, stdlib httptest) that
// serves whatever a test puts in it — broken descriptors, wrong digests — and lets a test replace
// any response (Override), for tests of what c2vm does with a registry that lies.
type Hostile struct {
	*httptest.Server
	Host string // 127.0.0.1:PORT

	mu        sync.Mutex
	manifests map[string]stored // by "REPO:TAG" and "REPO@DIGEST"
	blobs     map[string][]byte // by digest string
	// Override, when set, sees every request first and reports whether it answered it.
	Override func(w http.ResponseWriter, r *http.Request) bool
	// Realm, when set, makes every /v2/ request without "Authorization: Bearer ok" answer 401 with
	// a bearer challenge naming this token realm URL.
	Realm string
}

var quiet = log.New(io.Discard, "", 0)

type stored struct {
	mediaType string
	data      []byte
}

// StartHostile starts a hostile registry over TLS (a certificate httptest's client trusts, which
// c2vm does not unless told: use --insecure-registry or SSL_CERT_FILE) or plain HTTP, and stops it
// when the test ends.
func StartHostile(t testing.TB, tls bool) *Hostile {
	t.Helper()
	h := &Hostile{manifests: map[string]stored{}, blobs: map[string][]byte{}}
	h.Server = httptest.NewUnstartedServer(http.HandlerFunc(h.serve))
	h.Config.ErrorLog = quiet // TLS handshakes c2vm refuses are the point
	if tls {
		h.StartTLS()
	} else {
		h.Start()
	}
	h.Host = strings.TrimPrefix(strings.TrimPrefix(h.URL, "https://"), "http://")
	t.Cleanup(h.Close)
	return h
}

// PutBlob stores b and returns its descriptor (of mediaType).
func (h *Hostile) PutBlob(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	h.mu.Lock()
	h.blobs[d.String()] = b
	h.mu.Unlock()
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// PutManifest stores a manifest or index under repo by its digest and, when tag is not "", by tag.
func (h *Hostile) PutManifest(repo, tag, mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	h.mu.Lock()
	h.manifests[repo+"@"+d.String()] = stored{mediaType, b}
	if tag != "" {
		h.manifests[repo+":"+tag] = stored{mediaType, b}
	}
	h.mu.Unlock()
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// PutJSON is PutManifest of v marshalled.
func (h *Hostile) PutJSON(t testing.TB, repo, tag, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return h.PutManifest(repo, tag, mediaType, b)
}

// BundleArtifact is a small valid bundle artifact (initrd rootfs format: vmlinuz and initrd.img of
// a few bytes) whose blobs are stored; Manifest can be altered and stored with PutJSON.
type BundleArtifact struct {
	Manifest ocispec.Manifest
	Config   []byte // bundle.json
}

// PutBundle stores the blobs of a small valid bundle artifact and returns it, unstored.
func (h *Hostile) PutBundle(t testing.TB) BundleArtifact {
	t.Helper()
	files := map[string][]byte{bundle.KernelFile: []byte("not really a kernel\n"), bundle.InitrdFile: []byte("not really an initrd\n")}
	m := bundle.Manifest{SchemaVersion: bundle.SchemaVersion, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootfsFormat: bootcfg.FormatInitrd, Source: bundle.Source{Ref: "hostile"}}
	m.Boot.Container.Rootfs.Format = bootcfg.FormatInitrd
	for _, n := range []string{bundle.InitrdFile, bundle.KernelFile} {
		sum := sha256.Sum256(files[n])
		m.Files = append(m.Files, bundle.File{Name: n, Size: int64(len(files[n])), SHA256: hex.EncodeToString(sum[:])})
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	man, err := m.ArtifactManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	h.PutBlob(bundle.ConfigMediaType, raw)
	for _, n := range []string{bundle.InitrdFile, bundle.KernelFile} {
		h.PutBlob("", files[n])
	}
	return BundleArtifact{Manifest: man, Config: raw}
}

// Index returns an OCI index of one manifest for linux/amd64.
func Index(m ocispec.Descriptor) ocispec.Index {
	m.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	return ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{m}}
}

// Endless answers with a body that never ends (until the client goes away).
func Endless(w http.ResponseWriter, r *http.Request, contentType string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	chunk := []byte(strings.Repeat("{", 32<<10))
	for r.Context().Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// Stall sends headers for a body of size bytes, then nothing until the client goes away.
func Stall(w http.ResponseWriter, r *http.Request, size int64) {
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

func (h *Hostile) serve(w http.ResponseWriter, r *http.Request) {
	if h.Override != nil && h.Override(w, r) {
		return
	}
	if h.Realm != "" && r.Header.Get("Authorization") != "Bearer ok" {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q,service=%q", h.Realm, h.Host))
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/v2/" {
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/")
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	var body []byte
	var mediaType string
	if i := strings.LastIndex(rest, "/manifests/"); i >= 0 {
		repo, ref := rest[:i], rest[i+len("/manifests/"):]
		key := repo + ":" + ref
		if strings.Contains(ref, ":") {
			key = repo + "@" + ref
		}
		h.mu.Lock()
		s, ok := h.manifests[key]
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		body, mediaType = s.data, s.mediaType
	} else if i := strings.LastIndex(rest, "/blobs/"); i >= 0 {
		h.mu.Lock()
		b, ok := h.blobs[rest[i+len("/blobs/"):]]
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		body, mediaType = b, "application/octet-stream"
	} else {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(body).String())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}

// TokenRealm is a token server that records what it was sent: the Authorization header and the
// form's password of each request.
type TokenRealm struct {
	*httptest.Server
	mu   sync.Mutex
	Seen []string
}

// StartRealm starts a token realm on addr ("" = 127.0.0.1:0), over TLS or plain HTTP.
func StartRealm(t testing.TB, addr string, tls bool) *TokenRealm {
	t.Helper()
	tr := &TokenRealm{}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		tr.mu.Lock()
		tr.Seen = append(tr.Seen, r.Header.Get("Authorization")+" "+r.PostForm.Get("password"))
		tr.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"token":"ok","access_token":"ok"}`)
	}))
	s.Config.ErrorLog = quiet
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		s.Listener.Close()
		s.Listener = l
	}
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	tr.Server = s
	t.Cleanup(s.Close)
	return tr
}

// Requests returns what the realm was sent.
func (r *TokenRealm) Requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.Seen...)
}
