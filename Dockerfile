# c2vm in `docker build`.
#
#   # the converter image: c2vm + squashfs-tools + the reference kernel, for your own pipelines
#   docker build --target converter -t c2vm .
#
#   # a VM bundle from an image archive in the build context (docker save / oci-archive)
#   docker save myapp -o myapp.tar
#   docker build --target bundle --build-arg IMAGE=myapp.tar --output type=local,dest=myapp.bundle .
#
#   # in your own project's Dockerfile, FROM the converter image (see examples/vm-stage):
#   #   FROM c2vm AS vm
#   #   RUN --mount=type=bind,from=app,target=/rootfs c2vm convert -o /out/bundle --change 'CMD ...' rootfs:/rootfs
#   #   FROM scratch AS bundle
#   #   COPY --from=vm /out/bundle /
#
# BuildKit is needed (RUN --mount): Debian's docker.io 20.10 client has it built in
# (DOCKER_BUILDKIT=1); docker >= 23 needs the buildx plugin.
#
#   # the example image (made offline from busybox), converted
#   docker build --target hello --output type=local,dest=hello.bundle .
#
# Base images are build arguments so offline builders can point them at local images.
ARG GO_IMAGE=golang:1.26-bookworm
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${GO_IMAGE} AS build
# The guest init and a static runc are built for amd64 and arm64 guests (cross-compiled with
# libseccomp of the other architecture), whatever the builder's architecture.
RUN other=$(case $(dpkg --print-architecture) in amd64) echo arm64;; *) echo amd64;; esac) && \
    cross=$(case $other in amd64) echo gcc-x86-64-linux-gnu;; *) echo gcc-aarch64-linux-gnu;; esac) && \
    dpkg --add-architecture $other && apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      gcc libc6-dev pkg-config libseccomp-dev zstd make busybox-static $cross libc6-dev-$other-cross libseccomp-dev:$other && \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# Only the sources: an image archive or a bundle in the context must not rebuild c2vm.
COPY Makefile ./
COPY agent agent
COPY bootcfg bootcfg
COPY bundle bundle
COPY cmd cmd
COPY convert convert
COPY examples examples
COPY guestinit guestinit
COPY initgen initgen
COPY internal internal
COPY kernel kernel
RUN make build-only && go run ./examples/mkimage -o /out/hello-oci

FROM ${DEBIAN_IMAGE} AS converter
# KERNEL_ARCHES: the VM architectures whose reference kernel the image carries (~21-27 MB each).
ARG KERNEL_ARCHES="amd64 arm64"
RUN for a in $KERNEL_ARCHES; do dpkg --print-architecture | grep -qx $a || dpkg --add-architecture $a; done && \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      squashfs-tools e2fsprogs ca-certificates && \
    mkdir -p /var/cache/c2vm/kernel && cd /var/cache/c2vm/kernel && \
    for a in $KERNEL_ARCHES; do \
      dep=$(apt-cache depends linux-image-cloud-$a:$a | awk '/Depends: linux-image-[0-9]/{print $2; exit}') && \
      apt-get download "$dep" || exit 1; \
    done && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/bin/c2vm /usr/local/bin/c2vm
# c2vm finds the kernel package in $XDG_CACHE_HOME/c2vm/kernel/ and unpacks it there on first use.
ENV XDG_CACHE_HOME=/var/cache
ENTRYPOINT ["c2vm"]

FROM converter AS bundle-build
# COPY, not RUN --mount=source=${IMAGE}: docker.io 20.10's BuildKit does not expand an ARG in a
# mount's source ("/${IMAGE}" not found), COPY does everywhere. The archive is copied whole (no
# extraction: COPY, not ADD).
ARG IMAGE=image.tar
COPY ${IMAGE} /in/image.tar
RUN mkdir -p /out && c2vm convert --quiet -o /out/bundle /in/image.tar && chmod 0755 /out/bundle

FROM scratch AS bundle
COPY --from=bundle-build /out/bundle /

FROM converter AS hello-build
COPY --from=build /out/hello-oci /in/hello-oci
RUN mkdir -p /out && c2vm convert --quiet -o /out/bundle oci:/in/hello-oci:hello

FROM scratch AS hello
COPY --from=hello-build /out/bundle /
