#!/bin/sh
# compose.yaml's console tokens, made before the console starts: a token
# file (`name role token` lines, webhookd console --token-file) in a volume
# of its own, with an admin and a read-only token: CONSOLE_ADMIN_TOKEN and
# CONSOLE_READ_TOKEN when set, else the file's own from an earlier start,
# else 32 random bytes each. Readable by the console's user only; kept
# until `docker compose down -v`. With arguments, runs them afterwards:
#   docker compose run --rm console-tokens cat /tokens/console.tokens
set -eu
file=/tokens/console.tokens
random_token() {
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
}
kept() {
  if [ -r "$file" ]; then awk -v n="$1" '$1 == n { print $3 }' "$file"; fi
}
admin=${CONSOLE_ADMIN_TOKEN:-$(kept admin)}
readonly_token=${CONSOLE_READ_TOKEN:-$(kept read)}
umask 077
tmp="$file.new"
{
  echo "# Made by deploy/compose/console-tokens.sh: name role token"
  echo "admin admin ${admin:-$(random_token)}"
  echo "read read ${readonly_token:-$(random_token)}"
} > "$tmp"
# The webhookd image's user.
chown 65532:65532 "$tmp"
chmod 400 "$tmp"
mv -f "$tmp" "$file"
echo "console tokens in $file" >&2
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
