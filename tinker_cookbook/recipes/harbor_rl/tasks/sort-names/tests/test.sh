#!/bin/bash
# Grades the task: writes 1 (pass) or 0 (fail) to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if [ "$(cat /app/sorted.txt 2>/dev/null)" = "$(printf "alice\nbob\ncarol\ndave\nmallory\ntrent\nzed")" ] && [ "$(head -1 /app/names.txt)" = "mallory" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
