#!/usr/bin/env bash
# dist/release.sh: build every release artifact into one directory and
# publish nothing:
#   relay_VERSION_linux_amd64, _linux_arm64, _linux_armv7 (Raspberry Pi and
#   industrial gateways), _windows_amd64.exe   static binaries (CGO_ENABLED=0,
#                                              -trimpath, version and commit stamped)
#   relay_VERSION_amd64.deb, relay_VERSION_arm64.deb   the Debian packages (dist/nfpm.yaml)
#   SHA256SUMS                                 sha256sum -c SHA256SUMS checks them
#
#   dist/release.sh                      # everything, into release/
#   dist/release.sh -o DIR linux/amd64   # only these targets (GOOS/GOARCH, or
#                                        # linux/arm/7); linux/amd64 and
#                                        # linux/arm64 bring their .deb
#
# RELAY_VERSION overrides the version: by default the tag at HEAD without
# its leading v, else 0.0.0~git<commit time>.<commit>, which sorts before
# any release. The build is reproducible: the same commit gives the same
# bytes (SOURCE_DATE_EPOCH is the commit time).
#
# nfpm, the Debian packager, is the Go module github.com/goreleaser/nfpm/v2
# at a pinned version, built by `go install` on first use (the module proxy
# checks it against sum.golang.org); it stays out of go.mod, so its
# dependencies never change relay's. Needs Go, git and gzip.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

nfpm_module=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

out=release
while getopts o: opt; do
  case $opt in
    o) out=$OPTARG ;;
    *) echo "usage: dist/release.sh [-o DIR] [GOOS/GOARCH ...]" >&2; exit 64 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(linux/amd64 linux/arm64 linux/arm/7 windows/amd64)

commit=$(git rev-parse HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || commit="$commit+modified"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
if [ -z "${RELAY_VERSION:-}" ]; then
  tag=$(git describe --tags --exact-match 2>/dev/null || true)
  if [ -n "$tag" ]; then
    RELAY_VERSION=${tag#v}
  else
    RELAY_VERSION="0.0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).$(git rev-parse --short=12 HEAD)"
  fi
fi
export RELAY_VERSION
case $RELAY_VERSION in [0-9]*) ;; *) echo "release: RELAY_VERSION=$RELAY_VERSION must start with a digit (Debian versions do)" >&2; exit 64 ;; esac

rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

debs=()
for target in "${targets[@]}"; do
  IFS=/ read -r goos goarch goarm <<<"$target"
  name="relay_${RELAY_VERSION}_${goos}_${goarch}"
  [ -z "$goarm" ] || name="relay_${RELAY_VERSION}_${goos}_${goarch}v${goarm}"
  [ "$goos" != windows ] || name="$name.exe"
  echo "== $name"
  CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOARM=$goarm go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X main.version=$RELAY_VERSION -X main.commit=$commit" \
    -o "$out/$name" ./cmd/relay
  case $goos/$goarch in linux/amd64 | linux/arm64) debs+=("$goarch:$out/$name") ;; esac
done

if [ ${#debs[@]} -gt 0 ]; then
  echo "== nfpm ($nfpm_module)"
  GOBIN="$work/bin" go install "$nfpm_module"
  for deb in "${debs[@]}"; do
    arch=${deb%%:*}
    echo "== relay_${RELAY_VERSION}_$arch.deb"
    # The staging directory dist/nfpm.yaml describes.
    stage="$work/stage-$arch"
    mkdir -p "$stage/bin" "$stage/doc"
    cp -r dist relay.toml.example "$stage/"
    cp "${deb#*:}" "$stage/bin/relay"
    {
      echo "relay ($RELAY_VERSION) unstable; urgency=medium"
      echo
      echo "  * Built from commit"
      echo "    $commit; its changes:"
      echo "    https://github.com/relaymail/relay/commits/${commit%+modified}"
      echo
      echo " -- $(sed -n 's/^maintainer: //p' dist/nfpm.yaml)  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
    } | gzip -9n >"$stage/doc/changelog.gz"
    # The manual page, compressed as Debian wants it; -n leaves out the
    # name and time stamp, so the bytes depend on dist/relay.1 only.
    gzip -9n <dist/relay.1 >"$stage/doc/relay.1.gz"
    (cd "$stage" && RELAY_ARCH=$arch "$work/bin/nfpm" package --packager deb --config dist/nfpm.yaml --target "$out/")
  done
fi

(cd "$out" && sha256sum -- * >SHA256SUMS)
echo "== $out"
ls -l "$out"
