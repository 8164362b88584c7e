# shellcheck shell=bash disable=SC2154  # __name, __real, __log, __mode come from the stub
# Body of the runtime wrappers that run.sh gives the engines in place of runc / runtime (sourced
# by a generated stub defining __name, __real, __log, __mode). Appends to $__log one CALL line:
# time, pid, parent command, cwd, targets of fds 0-2, number of environment variables and those
# engines set for runtimes, argv. __mode=rc runs the runtime as a child and appends an EXIT line
# with the status (and, on failure, the tail of the --log file); __mode=exec execs it.
# The runtime gets the caller's stdio, arguments and exact environment (read back from
# /proc/$$/environ, since bash itself adds SHLVL, PWD and _).

mapfile -d '' __envv <"/proc/$$/environ"
__t() { readlink "/proc/$$/fd/$1" 2>/dev/null || echo closed; }
__fds="fd0=$(__t 0) fd1=$(__t 1) fd2=$(__t 2)"
__env=
for __e in "${__envv[@]}"; do
  case $__e in
    PATH=*) __env+="PATH=set " ;;
    HOME=* | XDG_RUNTIME_DIR=* | NOTIFY_SOCKET=* | LISTEN_FDS=* | GOMAXPROCS=* | _OCI_* | _CONTAINERS_*) __env+="$__e " ;;
  esac
done
{
  printf '%s CALL pid=%s parent=%s cwd=%s %s nenv=%s env=[%s] argv=' \
    "$(/usr/bin/date +%T.%N)" "$$" "$(</proc/$PPID/comm)" "$PWD" "$__fds" "${#__envv[@]}" "${__env% }"
  printf ' %q' "$__name" "$@"
  printf '\n'
} >>"$__log" 2>/dev/null

if [ "$__mode" = exec ]; then
  exec /usr/bin/env -i -- "${__envv[@]}" "$__real" "$@"
fi
__rc=0
/usr/bin/env -i -- "${__envv[@]}" "$__real" "$@" || __rc=$?
__logf=
__prev=
for __a in "$@"; do
  [ "$__prev" != --log ] || __logf=$__a
  __prev=$__a
done
{
  printf '%s EXIT pid=%s rc=%s\n' "$(/usr/bin/date +%T.%N)" "$$" "$__rc"
  if [ "$__rc" != 0 ] && [ -n "$__logf" ] && [ -f "$__logf" ]; then
    /usr/bin/tail -n 5 "$__logf" | /usr/bin/sed 's/^/    log: /'
  fi
} >>"$__log" 2>/dev/null
exit "$__rc"
