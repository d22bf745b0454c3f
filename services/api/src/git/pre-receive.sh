#!/bin/sh
# git's pre-receive hook for Berth repositories. It runs inside `git receive-pack`
# with the pushed objects still in quarantine, so it archives the pushed commit
# itself and hands the tarball to the API, printing the build's output as it
# arrives (git shows it as `remote:` lines). Exit 1 rejects the push and leaves
# the branch where it was.
#
# Contract with the API: POST $BERTH_HOOK_URL (&rev=…&ref=… appended) with the tar
# as body and $BERTH_HOOK_TOKEN as bearer token; the answer streams text and its
# last line is `berth-result: ok` or `berth-result: failed`.
#
# POSIX sh and curl, not Node: this runs on every push, and a Node start cost
# ~120 ms of the push-to-live loop.
set -u

deploy_ref=
deploy_old=
deploy_new=
refused=
# Read every update first: git feeds them all before it looks at the exit status.
while read -r old new ref; do
  [ -n "${ref:-}" ] || continue
  if [ -z "$deploy_ref" ] && { [ "$ref" = refs/heads/main ] || [ "$ref" = refs/heads/master ]; }; then
    deploy_ref=$ref
    deploy_old=$old
    deploy_new=$new
  elif [ -z "$refused" ]; then
    refused=$ref
  fi
done

if [ -n "$refused" ]; then
  echo " !     Pushing to $refused is not supported. Push main (or master) to deploy:"
  echo " !       git push platform HEAD:main"
  exit 1
fi
[ -n "$deploy_ref" ] || exit 0

is_zero() { case "$1" in *[!0]*) return 1 ;; *) return 0 ;; esac; }
if is_zero "$deploy_new"; then
  echo " !     Deleting the deployed branch is not allowed."
  exit 1
fi

# Pushes to one app are serialised by the API, so the branch is final here: if it
# moved since this push read it, another push landed first while this one waited.
# Building would release code whose ref update must then fail.
current=$(git rev-parse --verify -q "$deploy_ref" 2>/dev/null || true)
expected=$deploy_old
is_zero "$deploy_old" && expected=
if [ "$current" != "$expected" ]; then
  echo " !     ${deploy_ref#refs/heads/} moved while this push waited for another push to this app."
  echo " !     Fetch, merge or rebase, and push again."
  exit 1
fi

# The answer's lines pass through as they come; curl's -w adds the HTTP status after
# the body, on a line of its own (000: the API could not be reached).
git archive --format=tar "$deploy_new" |
  curl -sS -N -X POST -T - \
    -H "Authorization: Bearer $BERTH_HOOK_TOKEN" -H "Content-Type: application/x-tar" -H "Expect:" \
    -w '\nberth-http-status: %{http_code}\n' \
    "$BERTH_HOOK_URL&rev=$deploy_new&ref=$deploy_ref" |
  {
    result=
    status=
    blank=0 # empty lines held back: the one before the status line is curl's, not the API's
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in
        "berth-result: "*) result=${line#berth-result: } ;;
        "berth-http-status: "*) status=${line#berth-http-status: } ;;
        "")
          blank=$((blank + 1))
          continue
          ;;
        *)
          while [ "$blank" -gt 0 ]; do echo; blank=$((blank - 1)); done
          printf '%s\n' "$line"
          ;;
      esac
      blank=0
    done
    if [ -z "$result" ]; then
      if [ "${status:-000}" = 000 ]; then
        echo " !     Push rejected: the platform could not be reached."
      else
        echo " !     Push rejected by the platform (HTTP $status)."
      fi
    fi
    [ "$result" = ok ]
  }
