# Sourced by recipe scripts to read `--name value` options.
#
# The calling script declares its options, one `name=default  # comment` per line, between a
# line `# ---- options` and a line `# ---- end options`; only those names are accepted (a dash
# in a name may be written as `_` or `-`). `--help` prints that block.  With
# pass_unknown=true, unknown options are kept, in order, in the array `passthrough_args` for the
# caller to forward (run.sh -> distill.sh); otherwise they are an error.
# shellcheck disable=SC2148
_caller=${BASH_SOURCE[1]}
_option_block=$(sed -n '/^# ---- options/,/^# ---- end options/p' "${_caller}")
_option_names=$(grep -oE '^[a-z_0-9]+=' <<< "${_option_block}" | tr -d =)
passthrough_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help)
            sed -n '2,/^$/p' "${_caller}" | grep '^#' | sed 's/^# \{0,1\}//' >&2
            echo "Options (default):" >&2
            grep -E '^[a-z_0-9]+=' <<< "${_option_block}" | sed 's/^/  --/' >&2
            exit 0 ;;
        --*)
            _name=${1#--}; _name=${_name//-/_}
            if [[ "${_name}" =~ ^[a-z_0-9]+$ ]] && grep -qxF "${_name}" <<< "${_option_names}"; then
                [ $# -ge 2 ] || { echo "${_caller##*/}: option '$1' needs a value" >&2; exit 2; }
                printf -v "${_name}" '%s' "$2"; shift 2
            elif [ "${pass_unknown:-false}" = true ]; then
                [ $# -ge 2 ] || { echo "${_caller##*/}: option '$1' needs a value" >&2; exit 2; }
                passthrough_args+=("$1" "$2"); shift 2
            else
                echo "${_caller##*/}: unknown option '$1' (see --help)" >&2; exit 2
            fi ;;
        *) echo "${_caller##*/}: unexpected argument '$1' (options are --name value)" >&2; exit 2 ;;
    esac
done
unset _caller _option_block _option_names _name
