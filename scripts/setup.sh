# Shared set-up for ./run, ./test and ./manual (sourced, not executed): the virtualenv with the project
# installed, Debian's Chromium for the PDFs (and the pages' browser tests), poppler-utils for
# reading them back, and the pages' pinned third-party files. Every step checks first, so a
# second run costs well under a second.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

APT_UPDATED=

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "Root is needed for: $*" >&2
        exit 1
    fi
}

apt_install() {
    say "Installing $* (apt-get)"
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

python_for_venv() {
    command -v python3.11 || command -v python3 || { echo "Python 3.11 is needed." >&2; exit 1; }
}

ensure_venv() {
    [ -x .venv/bin/python ] && return
    local python
    python=$(python_for_venv)
    say "Creating .venv with $python"
    # Debian ships venv's pip bootstrap separately (python3-venv).
    if ! "$python" -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        apt_install python3-venv
        "$python" -m venv .venv
    fi
}

ensure_project_installed() {
    # The stamp holds the hash of pyproject.toml at the last successful install.
    local stamp=.venv/.pyproject.sha256 wanted
    wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] && [ -x .venv/bin/invoicing ]; then
        return
    fi
    say "Installing the project and its dependencies into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,docs]'
    echo "$wanted" >"$stamp"
}

ensure_system_packages() {
    local missing=()
    command -v chromium >/dev/null || [ -x /usr/lib/chromium/chromium ] || missing+=(chromium)
    command -v pdftotext >/dev/null || missing+=(poppler-utils)
    if [ ${#missing[@]} -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

# GraphiQL's and the portal's third-party files (static/pages/vendor.json): fetched once from
# the npm registry, checked against their pins, then served by the product itself.
ensure_page_assets() {
    .venv/bin/python scripts/page_assets.py --check 2>/dev/null && return
    command -v npm >/dev/null || apt_install npm
    say "Fetching the pages' pinned assets (npm registry)"
    .venv/bin/python scripts/page_assets.py
}

# Azurite, Microsoft's storage emulator, for the Azure Blob cost source tests: installed from
# the npm registry at a pinned version into ./var/azurite (the tests start and stop it).
AZURITE_VERSION=3.37.0
ensure_azurite() {
    local installed=var/azurite/node_modules/azurite/package.json
    if [ -f "$installed" ] && grep -q "\"version\": \"$AZURITE_VERSION\"" "$installed"; then
        return
    fi
    command -v npm >/dev/null || apt_install npm
    say "Installing Azurite $AZURITE_VERSION (npm registry)"
    mkdir -p var/azurite
    npm install --prefix var/azurite --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
        "azurite@$AZURITE_VERSION" >/dev/null
}

ensure_venv
ensure_project_installed
ensure_system_packages
ensure_page_assets
ensure_azurite

# Chromium writes its profile under XDG_CONFIG_HOME: keep it in ./var, not in $HOME.
export XDG_CONFIG_HOME="$ROOT/var/xdg/config" XDG_CACHE_HOME="$ROOT/var/xdg/cache"
mkdir -p "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME"
