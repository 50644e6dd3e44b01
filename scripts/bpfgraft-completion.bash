# bash completion for bpfgraft (installed as
# share/bash-completion/completions/bpfgraft; or `source` this file).
# Commands, subcommands and options; program, map and attached-process
# names are asked of the running bpfgraftd (--json), quietly, when it answers.

# _bpfgraft_ask WHAT FIELD: the FIELD values of `bpfgraft --json WHAT` on
# the socket the command line names (--socket) or the default.
_bpfgraft_ask()
{
    local sock=() i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --socket | --host | --tls-cert | --tls-key | --tls-ca) sock+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}") ;;
        --socket=* | --host=* | --tls-*=*) sock+=("${COMP_WORDS[i]}") ;;
        esac
    done
    # shellcheck disable=SC2086  # WHAT is "map list", two words
    timeout 2 "${COMP_WORDS[0]}" "${sock[@]}" --json $1 2>/dev/null |
        grep -o "\"$2\": *\"\\?[^\",]*" | sed 's/.*: *"\{0,1\}//'
}

# Loaded objects' ids (the CLI lists programs and maps, not objects).
_bpfgraft_objects()
{
    _bpfgraft_ask "prog list" object | sort -u
}

_bpfgraft_pids()
{
    local p
    for p in /proc/[0-9]*; do printf '%s\n' "${p#/proc/}"; done
}

_bpfgraft()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="status load unload prog map attach start run tools compile detach ps trace events api audit stats dial-stdio"
    local words=() i dashdash=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --socket | --host | --tls-cert | --tls-key | --tls-ca) ((i++)) ;;
        --socket=* | --host=* | --tls-*=* | --json | -j) ;;
        --) dashdash=$i; words+=(--) ;;
        *) words+=("${COMP_WORDS[i]}") ;;
        esac
    done
    COMPREPLY=()

    # After "--" (start, run): the command being run.
    if ((dashdash)); then
        if declare -F _command_offset >/dev/null; then
            _command_offset $((dashdash + 1))
        else
            mapfile -t COMPREPLY < <(compgen -c -- "$cur")
        fi
        return
    fi
    case $prev in
    --socket | -o | --cache-dir | --tls-cert | --tls-key | --tls-ca) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --engine) mapfile -t COMPREPLY < <(compgen -W "llvm x86 interp tiered" -- "$cur"); return ;;
    --topic) mapfile -t COMPREPLY < <(compgen -W "trace ringbuf target" -- "$cur"); return ;;
    --target | --name | -O) return ;;
    --attach) mapfile -t COMPREPLY < <(compgen -W "$(_bpfgraft_pids)" -- "$cur"); return ;;
    esac
    if ((${#words[@]} == 0)); then
        mapfile -t COMPREPLY < <(compgen -W "$commands --socket --host --tls-cert --tls-key --tls-ca --json --help" -- "$cur")
        return
    fi

    local n=${#words[@]} list=""
    case ${words[0]} in
    load | compile)
        if [[ $cur == -* ]]; then
            [[ ${words[0]} == load ]] && list="--name" || list="-o --cache-dir -O -q"
        elif ((n == 1)); then
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return
        fi
        ;;
    unload) ((n == 1)) && list=$(_bpfgraft_objects) ;;
    prog)
        if ((n == 1)); then list="list show dump"
        elif ((n == 2)) && [[ ${words[1]} != list ]]; then list=$(_bpfgraft_ask "prog list" name)
        fi
        ;;
    map)
        if ((n == 1)); then list="list show dump lookup update delete pop adopt"
        elif ((n == 2)) && [[ ${words[1]} != list ]]; then list=$(_bpfgraft_ask "map list" name)
        elif [[ ${words[1]} == update ]]; then list="--noexist --exist"
        fi
        ;;
    attach)
        if [[ $cur == -* ]]; then list="--target --engine"
        elif ((n == 1)); then list=$(_bpfgraft_pids)
        elif ((n == 2)); then list=$(_bpfgraft_objects)
        else list=$(_bpfgraft_ask "prog list" name)
        fi
        ;;
    start)
        if [[ $cur == -* ]]; then list="--target --engine --"
        elif ((n == 1)); then list=$(_bpfgraft_objects)
        else list=$(_bpfgraft_ask "prog list" name)
        fi
        ;;
    run) list="--attach --engine --" ;;
    detach) ((n == 1)) && list=$(_bpfgraft_ask ps pid) ;;
    events) list="--topic" ;;
    stats) ((n == 1)) && list="enable disable status" ;;
    esac
    mapfile -t COMPREPLY < <(compgen -W "$list" -- "$cur")
}
complete -F _bpfgraft bpfgraft
