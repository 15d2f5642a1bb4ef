#!/usr/bin/env bash
# Peak memory of agent-farm while an agent floods its output (issue: bounded resources).
# A fake `claude` prints ~320 MB of stream-json lines (300k lines of 1 kB, then a result); the
# claude preset reads every line live, so this exercises the line reader, not just a file
# redirection. Prints agent-farm's peak RSS (VmHWM) and the size of the log it wrote.
# Usage: scripts/flood-memory.sh [LINES]   (default 300000)
set -euo pipefail
lines=${1:-300000}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$root/Cargo.toml" >/dev/null 2>&1
bin="$root/target/release/agent-farm"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$tmp.farm"' EXIT
export HOME="$tmp/home" GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_SYSTEM=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
mkdir -p "$HOME" "$tmp/repo"
cd "$tmp/repo"
git init -q -b main
echo x > README.md
cat > "$tmp/fake-claude" <<PY
#!/usr/bin/env python3
import sys
line = '{"type":"assistant","message":{"id":"m","content":[{"type":"text","text":"' + 'x' * 1000 + '"}]}}\n'
w = sys.stdout.write
for _ in range($lines):
    w(line)
w('{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","total_cost_usd":0.01}\n')
PY
chmod +x "$tmp/fake-claude"
printf 'version: 1\nagent:\n  preset: claude\n  program: %s\n  preamble: false\ndomains:\n  - name: loud\n    owns: [loud/**]\n    prompt: flood\n' "$tmp/fake-claude" > farm.yaml
git add -A && git commit -qm init
"$bin" run --progress none >/dev/null 2>&1 &
pid=$!
peak=0
while kill -0 "$pid" 2>/dev/null; do
  h=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [ -n "$h" ] && peak=$h
  sleep 0.1
done
wait "$pid" || true
log=$(ls "$tmp"/repo/.git/agent-farm/runs/*/loud/loud-output.log)
echo "agent output: $(($(stat -c %s "$log") / 1024 / 1024)) MiB through the stream reader; agent-farm peak RSS: $((peak / 1024)) MiB"
