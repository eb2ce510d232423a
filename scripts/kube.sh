#!/usr/bin/env bash
# A real Kubernetes control plane for the tests: kube-apiserver and kube-controller-manager
# v1.20.2 built from Debian
# bookworm's `kubernetes` source package with Debian's Go, etcd 3.4 and kubectl from Debian's
# binary packages (no Go module proxy or image registry is needed). Everything lands in a cache
# directory and a second run costs nothing; prints that directory's `bin` on the last line.
#
#   scripts/kube.sh            # build or reuse; bin directory on stdout
#
# Cache: $TWILL_KUBE_CACHE, else ~/.cache/twill-kube (~2 GB). Cold: ~6-9 min and ~1.4 GB peak
# memory on 2 cores; the facts behind each step are in ../shared/KUBE.md.
set -euo pipefail
cache="${TWILL_KUBE_CACHE:-$HOME/.cache/twill-kube}"
bin="$cache/bin"
version=v1.20.2
stamp="$bin/.built-$version"
if [ -f "$stamp" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] \
  && [ -x "$bin/etcd" ] && [ -x "$bin/kubectl" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$bin" "$cache/src" "$cache/debs"
log() { echo "kube.sh: $*" >&2; }
# One build at a time (two test runs, or a test and a manual run).
exec 9>"$cache/.lock"
flock 9
if [ -f "$stamp" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ]; then
  echo "$bin"
  exit 0
fi

need=()
for pkg in golang-go golang-github-modern-go-reflect2-dev dpkg-dev openssl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

# etcd, etcdctl, kubectl: unpacked from their .debs, so no etcd service starts on the machine.
if [ ! -x "$bin/etcd" ] || [ ! -x "$bin/kubectl" ]; then
  log "unpacking etcd and kubectl from Debian's packages"
  (cd "$cache/debs" && apt-get download -qq etcd-server etcd-client kubernetes-client >&2)
  for d in "$cache"/debs/*.deb; do dpkg-deb -x "$d" "$cache/debs/root"; done
  cp "$cache/debs/root/usr/bin/etcd" "$cache/debs/root/usr/bin/etcdctl" "$bin/"
  cp "$cache/debs/root/usr/bin/kubectl" "$bin/"
fi

if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ]; then
  # The source package through a private apt configuration whose lists add deb-src for the
  # machine's own mirrors, leaving /etc/apt alone.
  apt_dir="$cache/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/sources.list.d" "$apt_dir/cache"
  : >"$apt_dir/sources.list.d/src.list"
  rm -f "$apt_dir/sources.list.d/"*.sources
  # The machine's own Debian mirrors, in either form: deb822 (*.sources) or one-line
  # (sources.list). Third-party repositories are left out: most publish no sources.
  for f in /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ] && grep -q 'debian' "$f"; then
      sed 's/^Types: deb$/Types: deb-src/' "$f" >"$apt_dir/sources.list.d/$(basename "$f")"
    fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    if [ -f "$f" ]; then
      sed -n '/debian/s/^deb /deb-src /p' "$f" >>"$apt_dir/sources.list.d/src.list"
    fi
  done
  if ! grep -qs 'deb-src' "$apt_dir/sources.list.d/"*; then
    log "no Debian mirror found in /etc/apt to fetch the kubernetes source package from"
    exit 1
  fi
  cat >"$apt_dir/apt.conf" <<EOF
Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "$apt_dir/sources.list.d";
Dir::State::lists "$apt_dir/lists";
Dir::Cache "$apt_dir/cache";
Dir::Cache::archives "$apt_dir/archives";
EOF
  src="$cache/src/kubernetes"
  if [ ! -d "$src" ]; then
    log "fetching the kubernetes source package"
    # A mirror without sources (a third-party one that says debian) must not stop the rest.
    APT_CONFIG="$apt_dir/apt.conf" apt-get update -qq >&2 || log "some source lists did not update; going on"
    rm -rf "$cache/src/dl" && mkdir -p "$cache/src/dl"
    (cd "$cache/src/dl" && APT_CONFIG="$apt_dir/apt.conf" apt-get source -qq --download-only kubernetes >&2)
    # Into a temporary directory first: an interrupted extraction is never taken for a tree.
    rm -rf "$src.tmp"
    (cd "$cache/src/dl" && dpkg-source --no-check -x ./*.dsc "$src.tmp" >&2)
    mv "$src.tmp" "$src"
  fi
  gopath="$cache/gopath"
  mkdir -p "$gopath/src/k8s.io"
  ln -sfn "$src" "$gopath/src/k8s.io/kubernetes"
  export GOPATH="$gopath" GO111MODULE=off GOFLAGS= GOCACHE="$cache/gocache"
  # Debian's Go 1.19, whatever else is on PATH: v1.20 does not build with much newer ones.
  go() { /usr/lib/go/bin/go "$@"; }
  cd "$gopath/src/k8s.io/kubernetes"
  # The vendored reflect2 1.0.1 crashes under Go 1.19 at the first custom-resource write;
  # Debian's 1.0.2 does not.
  rm -f vendor/github.com/modern-go/reflect2/*.go vendor/github.com/modern-go/reflect2/*.s
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s \
    vendor/github.com/modern-go/reflect2/
  # The tarball lacks the generated OpenAPI definitions; generate them as upstream's make does.
  if [ ! -f "$src/.twill-openapi-generated" ]; then
    log "generating the OpenAPI definitions"
    go build -o "$cache/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
    # Every package with a file tagged for it (the tag may sit on a type, not only in doc.go).
    pkgs=$(grep -rl --include='*.go' --exclude='*_test.go' '+k8s:openapi-gen=' pkg staging/src \
      | xargs -n1 dirname | sort -u \
      | sed -e 's#^staging/src/##' -e 's#^pkg/#k8s.io/kubernetes/pkg/#' \
      | paste -sd, -)
    "$cache/openapi-gen" --input-dirs "$pkgs" \
      --output-package k8s.io/kubernetes/pkg/generated/openapi \
      --output-base "$gopath/src" -O zz_generated.openapi \
      --go-header-file hack/boilerplate/boilerplate.generatego.txt \
      --report-filename /dev/null >&2
    touch "$src/.twill-openapi-generated"
  fi
  log "building kube-apiserver and kube-controller-manager $version (cold: several minutes)"
  ver="k8s.io/kubernetes/vendor/k8s.io/component-base/version"
  cgo="k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version"
  flags="-s -w"
  for p in "$ver" "$cgo"; do
    flags="$flags -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=20"
  done
  # The controller-manager too (~2-4 min more, sharing most packages): node IPAM gives Nodes
  # their pod CIDRs and the token controller gives the ServiceAccount a real token.
  for cmd in kube-apiserver kube-controller-manager; do
    nice go build -ldflags "$flags" -o "$bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
fi
touch "$stamp"
echo "$bin"
