// Package image opens a container image stored on disk — an OCI image layout directory, an
// oci-archive (a tar of such a layout) or a docker-archive (the output of `docker save`) — picks the
// manifest for the wanted platform, verifies every JSON blob it reads against its descriptor, and
// serves each layer as an uncompressed tar stream that is checked, in the same single pass, against
// the compressed blob's digest and size and the config's diff_id.
//
// Nothing is copied or extracted: layout directories are read in place, and tar archives are indexed
// once (member name → offset and size) and their blobs served through io.SectionReader on the open
// file.
//
// References follow the containers-transports convention ("oci:DIR[:TAG]",
// "oci-archive:FILE[:TAG]", "docker-archive:FILE[:NAME:TAG]"); a bare path is detected by content.
// A tar that holds both manifest.json and index.json (what Docker ≥ 25 writes) is read as a
// docker-archive when given as a bare path, because manifest.json lists exactly the images the
// archive has blobs for; use the "oci-archive:" prefix to read its OCI index instead.
//
// See docs/usage.md (image references) and docs/architecture.md.
package image
