#!/bin/bash
# Grades the task: writes 1 (pass) or 0 (fail) to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if [ "$(tr -d "[:space:]" < /app/version.txt 2>/dev/null)" = "3.14.2" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
