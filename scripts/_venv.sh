# Sourced by scripts/serve and scripts/test: make ./.venv hold Strom and the given extras.
# Installs python3-venv through apt-get when Debian's python3 lacks it, and reinstalls only
# when pyproject.toml changed since the last install.
ensure_venv() {
    local extras="$1"
    if [ ! -x .venv/bin/python ]; then
        if ! python3 -m venv .venv >/dev/null 2>&1; then
            rm -rf .venv
            apt_install python3-venv
            python3 -m venv .venv
        fi
    fi
    local stamp=".venv/.strom-installed${extras:+-$extras}"
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
        echo "$want" > "$stamp"
    fi
}

apt_install() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
