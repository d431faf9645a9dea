#!/usr/bin/env bash
# Build the Docker images that Prism's container and SSH tests run against, from
# Debian packages only: no container registry is needed.
#
# Usage: scripts/build-test-images.sh [--with-spark] [--force]
#   --with-spark  also build prism-test/spark:bookworm
#   --force       rebuild images that already exist (the cached rootfs is reused)
#
# Images (each is skipped when `docker image inspect` finds it):
#   prism-test/base:bookworm   debootstrap --variant=minbase with python3,
#                              python3-venv and ca-certificates, via `docker import`.
#                              Debian's pip rejects system-wide installs (PEP 668).
#   prism-test/sshd:bookworm   base + openssh-server, rsync, tini; CMD runs sshd in
#                              the foreground, key-only login for root and prism
#   prism-test/spark:bookworm  sshd + openjdk-17-jre-headless
#
# The sshd image reads its authorized keys at container start from either:
#   - a file mounted at /etc/prism-test/authorized_keys (read-only is fine), or
#   - the environment variable SSH_AUTHORIZED_KEYS (one or more key lines).
# It installs them for root and for the user prism (uid 1000). Host keys
# (ed25519 and ECDSA) are generated at container start. SSHD_LISTEN_ADDRESS
# (default 0.0.0.0) and SSHD_PORT (default 22) set where sshd listens, for
# `--network host`. Examples:
#   docker run -d -p 127.0.0.1:2222:22 \
#     -v "$PWD/id.pub:/etc/prism-test/authorized_keys:ro" prism-test/sshd:bookworm
#   docker run -d --network host -e SSHD_LISTEN_ADDRESS=127.0.0.1 -e SSHD_PORT=2222 \
#     -e SSH_AUTHORIZED_KEYS="$(cat id.pub)" prism-test/sshd:bookworm
#
# debootstrap uses the Debian mirror that this machine's apt sources name. The
# downloaded .deb files and the finished rootfs tarball are cached in
# $PRISM_TEST_CACHE (default /var/cache/prism-test), so a rebuild only imports.
# Needs root and a running Docker engine (.ci/install-docker.sh starts one).
set -euo pipefail

readonly SUITE=bookworm
readonly BASE_IMAGE=prism-test/base:$SUITE
readonly SSHD_IMAGE=prism-test/sshd:$SUITE
readonly SPARK_IMAGE=prism-test/spark:$SUITE
readonly BASE_PACKAGES=python3,python3-venv,ca-certificates
# Bump when the rootfs recipe below changes, so the cached tarball is rebuilt.
readonly ROOTFS_RECIPE_VERSION=2
readonly CACHE_DIR="${PRISM_TEST_CACHE:-/var/cache/prism-test}"
readonly ROOTFS_TAR="$CACHE_DIR/rootfs-$SUITE-minbase-v$ROOTFS_RECIPE_VERSION.tar"

# Neither docker client on this machine kind has the buildx plugin that BuildKit
# needs, so select the legacy builder even if the environment sets DOCKER_BUILDKIT=1.
export DOCKER_BUILDKIT=0

WORK_DIR=""
FORCE=false
REPLACED_IMAGE_IDS=()

log() { printf 'build-test-images: %s\n' "$*" >&2; }

now() { date +%s.%N; }

elapsed_since() { awk -v start="$1" -v end="$(now)" 'BEGIN { printf "%.1f", end - start }'; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

image_size() {
  docker image inspect --format '{{.Size}}' "$1" |
    awk '{ printf "%.0f MB", $1 / 1000000 }'
}

cleanup() {
  [[ -n $WORK_DIR && -d $WORK_DIR ]] || return 0
  # debootstrap mounts /proc and /sys inside the rootfs and may leave them if it fails.
  local mount_point
  for mount_point in $(findmnt -rn -o TARGET | grep -F "$WORK_DIR/" | sort -r || true); do
    umount -l "$mount_point" || true
  done
  rm -rf --one-file-system "$WORK_DIR"
  WORK_DIR=""
FORCE=false
REPLACED_IMAGE_IDS=()
}

# Print the URI of the Debian archive that apt on this machine uses for $1.
apt_source_uri() {
  # shellcheck disable=SC2016 # $(REPO_URI) is apt's format field, not a shell expansion
  apt-get indextargets --no-release-info --format '$(REPO_URI)' \
    "Release: $1" 'Identifier: Packages' | head -n 1
}

find_mirror() {
  local uri codename
  uri=$(apt_source_uri "$SUITE")
  if [[ -z $uri ]]; then
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    uri=$(apt_source_uri "$codename")
  fi
  if [[ -z $uri ]]; then
    log "no Debian apt source found in /etc/apt/sources.list{,.d}; add one and retry"
    exit 1
  fi
  echo "${uri%/}"
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return
  log "debootstrap not found, installing it with apt"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
}

write_apt_sources() {
  local rootfs=$1 mirror=$2 security
  security=$(apt_source_uri "$SUITE-security")
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\n' "$mirror" "$SUITE" "$SUITE"
    printf 'Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [[ -n $security ]]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\n' "${security%/}" "$SUITE"
      printf 'Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -f "$rootfs/etc/apt/sources.list"
}

# Make the rootfs behave like a container image: no services start on package
# install, no recommends, no docs, no host-specific files, no apt lists.
configure_rootfs() {
  local rootfs=$1 mirror=$2
  if [[ -z $rootfs || "$(realpath "$rootfs")" == / || ! -d $rootfs/etc/apt ]]; then
    log "refusing to configure '$rootfs': not a debootstrap rootfs"
    exit 1
  fi
  write_apt_sources "$rootfs" "$mirror"
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$rootfs/etc/apt/apt.conf.d/90prism-test-no-recommends"
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90prism-test-no-docs" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  # Delete downloaded .deb files and apt's binary caches after every apt run.
  cat >"$rootfs/etc/apt/apt.conf.d/90prism-test-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} +
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  # openjdk's postinst links java.1.gz here with update-alternatives and fails
  # when the directory is missing.
  mkdir -p "$rootfs/usr/share/man/man1"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  rm -f "$rootfs"/var/cache/apt/archives/*.deb
  rm -f "$rootfs/etc/hostname" "$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/machine-id"
}

build_rootfs_tarball() {
  local mirror rootfs start
  ensure_debootstrap
  mirror=$(find_mirror)
  mkdir -p "$CACHE_DIR/debs"
  WORK_DIR=$(mktemp -d "$CACHE_DIR/work.XXXXXX")
  rootfs="$WORK_DIR/rootfs"
  log "debootstrap $SUITE from $mirror into $rootfs"
  start=$(now)
  debootstrap --variant=minbase --include="$BASE_PACKAGES" \
    --cache-dir="$CACHE_DIR/debs" "$SUITE" "$rootfs" "$mirror" \
    >"$WORK_DIR/debootstrap.log" 2>&1 || {
    log "debootstrap failed; last lines of its log:"
    tail -n 30 "$WORK_DIR/debootstrap.log" >&2
    exit 1
  }
  log "debootstrap took $(elapsed_since "$start") s"
  configure_rootfs "$rootfs" "$mirror"
  start=$(now)
  tar --numeric-owner -C "$rootfs" -cf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  find "$CACHE_DIR" -maxdepth 1 -name "rootfs-$SUITE-minbase-v*.tar" \
    -not -path "$ROOTFS_TAR" -delete
  log "rootfs tarball $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1)) took $(elapsed_since "$start") s"
  cleanup
}

build_base() {
  local start
  if [[ ! -f $ROOTFS_TAR ]]; then
    build_rootfs_tarball
  else
    log "using cached $ROOTFS_TAR"
  fi
  start=$(now)
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
  log "docker import $BASE_IMAGE took $(elapsed_since "$start") s"
}

write_sshd_context() {
  local context=$1
  cat >"$context/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update \\
 && apt-get install -y openssh-server rsync tini \\
 && apt-get clean \\
 && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*_key* \\
 && useradd --create-home --uid 1000 --shell /bin/bash prism \\
 && mkdir -p /run/sshd /etc/prism-test
COPY sshd_config /etc/ssh/sshd_config.d/prism-test.conf
COPY start-sshd /usr/local/sbin/prism-test-start-sshd
EXPOSE 22
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["/usr/local/sbin/prism-test-start-sshd"]
EOF
  # Debian's sshd_config includes sshd_config.d/*.conf first, and the first value wins.
  cat >"$context/sshd_config" <<'EOF'
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
EOF
  cat >"$context/start-sshd" <<'EOF'
#!/bin/sh
# Install the authorized keys given at `docker run` time, then run sshd in the foreground.
set -eu
keys_file=/etc/prism-test/authorized_keys
address="${SSHD_LISTEN_ADDRESS:-0.0.0.0}"
port="${SSHD_PORT:-22}"

install_keys() {
  home=$1
  user=$2
  mkdir -p "$home/.ssh"
  : >"$home/.ssh/authorized_keys"
  if [ -r "$keys_file" ]; then
    cat "$keys_file" >>"$home/.ssh/authorized_keys"
  fi
  if [ -n "${SSH_AUTHORIZED_KEYS:-}" ]; then
    printf '%s\n' "$SSH_AUTHORIZED_KEYS" >>"$home/.ssh/authorized_keys"
  fi
  chown -R "$user:$user" "$home/.ssh"
  chmod 700 "$home/.ssh"
  chmod 600 "$home/.ssh/authorized_keys"
}

install_keys /root root
install_keys /home/prism prism
if [ ! -s /root/.ssh/authorized_keys ]; then
  echo "prism-test-start-sshd: no authorized key in $keys_file or SSH_AUTHORIZED_KEYS, so every login will fail" >&2
fi
# No RSA host key: generating one takes about a second at each start.
for key_type in ed25519 ecdsa; do
  key_file="/etc/ssh/ssh_host_${key_type}_key"
  if [ ! -f "$key_file" ]; then
    ssh-keygen -q -N '' -t "$key_type" -f "$key_file"
  fi
done
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e -o "ListenAddress=$address:$port"
EOF
  chmod 755 "$context/start-sshd"
}

write_spark_context() {
  local context=$1
  cat >"$context/Dockerfile" <<EOF
FROM $SSHD_IMAGE
RUN apt-get update \\
 && apt-get install -y openjdk-17-jre-headless procps \\
 && apt-get clean \\
 && rm -rf /var/lib/apt/lists/* \\
 && ln -s "\$(dirname "\$(dirname "\$(readlink -f /usr/bin/java)")")" /usr/lib/jvm/java-17 \\
 && echo JAVA_HOME=/usr/lib/jvm/java-17 >>/etc/environment
ENV JAVA_HOME=/usr/lib/jvm/java-17
EOF
}

# Build an image from a generated Dockerfile. Host networking lets apt reach the
# mirror even when dockerd runs with --bridge=none.
build_with_dockerfile() {
  local image=$1 writer=$2 context build_log start status=0
  context=$(mktemp -d)
  build_log=$(mktemp)
  "$writer" "$context"
  start=$(now)
  docker build --force-rm --network host -t "$image" "$context" >"$build_log" 2>&1 || status=$?
  rm -rf "$context"
  if [[ $status -ne 0 ]]; then
    log "docker build $image failed (exit $status); last lines of its log:"
    tail -n 30 "$build_log" >&2
    rm -f "$build_log"
    exit 1
  fi
  rm -f "$build_log"
  log "docker build $image took $(elapsed_since "$start") s"
}

ensure_image() {
  local image=$1 builder=$2 old_id
  shift 2
  if image_exists "$image"; then
    if [[ $FORCE == false ]]; then
      log "$image exists ($(image_size "$image")), skipping"
      return
    fi
    old_id=$(docker image inspect --format '{{.Id}}' "$image")
    REPLACED_IMAGE_IDS=("$old_id" "${REPLACED_IMAGE_IDS[@]}")
  fi
  "$builder" "$@"
  log "$image built ($(image_size "$image"))"
}

# Remove the images that --force replaced, children first. An image that a
# container or another tag still uses stays.
remove_replaced_images() {
  local image_id
  for image_id in "${REPLACED_IMAGE_IDS[@]}"; do
    docker rmi "$image_id" >/dev/null 2>&1 || true
  done
}

main() {
  local with_spark=false start
  for arg in "$@"; do
    case $arg in
      --with-spark) with_spark=true ;;
      --force) FORCE=true ;;
      *)
        log "unknown option '$arg'; usage: $0 [--with-spark] [--force]"
        exit 2
        ;;
    esac
  done

  if [[ $EUID -ne 0 ]]; then
    log "must run as root (debootstrap needs it); uid is $EUID"
    exit 1
  fi
  if ! docker info >/dev/null 2>&1; then
    log "'docker info' failed: no Docker engine responds; run .ci/install-docker.sh first"
    exit 1
  fi

  start=$(now)
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.lock"
  flock 9
  trap cleanup EXIT

  ensure_image "$BASE_IMAGE" build_base
  ensure_image "$SSHD_IMAGE" build_with_dockerfile "$SSHD_IMAGE" write_sshd_context
  if [[ $with_spark == true ]]; then
    ensure_image "$SPARK_IMAGE" build_with_dockerfile "$SPARK_IMAGE" write_spark_context
  fi
  remove_replaced_images
  log "done in $(elapsed_since "$start") s"
}

main "$@"
