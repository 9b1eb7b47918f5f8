#!/bin/bash
# 1 when /home/agent/notes.txt says "ready" and belongs to the agent user (not root).
file=/home/agent/notes.txt
if [ "$(tr -d '[:space:]' < "$file" 2>/dev/null)" = "ready" ] && [ "$(stat -c %U "$file")" = "agent" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
