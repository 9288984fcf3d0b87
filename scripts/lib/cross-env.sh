# shellcheck shell=bash
# Shared by scripts/cross-build and scripts/package (sourced, not run).
# Installs what a plain Debian 12 machine lacks to build sitelink for a target
# and sets the linker and C compiler cargo needs for it (rusqlite's bundled
# SQLite is C).

# apt-get install, once per script run, only what is missing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  echo "installing ${missing[*]}"
  if [ -z "${SITELINK_APT_UPDATED:-}" ]; then
    apt-get update -qq
    export SITELINK_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Where cargo puts its output (honours CARGO_TARGET_DIR and .cargo/config).
cargo_target_dir() {
  cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# The Debian architecture of a Rust target.
deb_arch() {
  case "$1" in
    x86_64-unknown-linux-gnu) echo amd64 ;;
    aarch64-unknown-linux-gnu) echo arm64 ;;
    armv7-unknown-linux-gnueabihf) echo armhf ;;
    *) echo "unsupported target: $1" >&2; return 2 ;;
  esac
}

# The cross toolchain prefix of a Rust target (empty: native).
gnu_prefix() {
  case "$1" in
    x86_64-unknown-linux-gnu) echo "" ;;
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
    *) echo "unsupported target: $1" >&2; return 2 ;;
  esac
}

# Installs the cross gcc, libc and qemu for TARGET, adds its rust-std and
# exports CARGO_TARGET_<T>_LINKER and CC_<t>.
cross_setup() {
  local t=$1 prefix arch upper lower
  prefix=$(gnu_prefix "$t")
  arch=$(deb_arch "$t")
  upper=$(echo "$t" | tr 'a-z-' 'A-Z_')
  lower=$(echo "$t" | tr '-' '_')
  # Debian's hardening flags for the C in the binary (the bundled SQLite):
  # fortified libc calls and the stack protector, as dpkg-buildflags has them.
  export "CFLAGS_${lower}=-D_FORTIFY_SOURCE=2 -fstack-protector-strong"
  if [ -z "$prefix" ]; then
    command -v cc >/dev/null || apt_install gcc libc6-dev
    return 0
  fi
  apt_install "gcc-$prefix" "libc6-dev-$arch-cross" qemu-user-static
  if ! rustup target list --installed 2>/dev/null | grep -qx "$t"; then
    rustup target add "$t"
  fi
  export "CARGO_TARGET_${upper}_LINKER=$prefix-gcc"
  export "CC_${lower}=$prefix-gcc"
  export "AR_${lower}=$prefix-ar"
}

# Runs a binary built for TARGET on this machine (qemu-user for ARM).
run_for_target() {
  local t=$1
  shift
  case "$t" in
    x86_64-unknown-linux-gnu) "$@" ;;
    aarch64-unknown-linux-gnu) qemu-aarch64-static -L /usr/aarch64-linux-gnu "$@" ;;
    armv7-unknown-linux-gnueabihf) qemu-arm-static -L /usr/arm-linux-gnueabihf "$@" ;;
    *) echo "unsupported target: $t" >&2; return 2 ;;
  esac
}

# The host's Rust target: built without --target, so the native release build
# (tests, benches) and the amd64 package share one output directory.
host_target() {
  rustc -vV | sed -n 's/^host: //p'
}

# cargo's --target arguments for TARGET (none for the host).
target_args() {
  [ "$1" = "$(host_target)" ] || echo "--target $1"
}

# The release binary cargo builds for TARGET.
release_bin() {
  local dir
  dir=$(cargo_target_dir)
  if [ "$1" = "$(host_target)" ]; then
    echo "$dir/release/sitelink"
  else
    echo "$dir/$1/release/sitelink"
  fi
}
