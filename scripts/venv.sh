# Sourced by setup.sh and parity.sh: a virtualenv at $VENV with torch installed first, from
# $TORCH_SPEC (torch must come before anything that depends on it, or pip picks its own build).
# Expects PYTHON, TORCH_SPEC, VENV and a log function; sets STAMPS and the `pip` command array.
venv_with_torch() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    STAMPS="$VENV/.stamps"
    mkdir -p "$STAMPS"
    pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
        log "installing $TORCH_SPEC"
        # shellcheck disable=SC2086
        "${pip[@]}" install $TORCH_SPEC
    fi
}
