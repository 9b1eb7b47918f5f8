#!/bin/bash
# Grades the task: writes 1 (pass) or 0 (fail) to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if [ -x /app/greet.sh ] && [ "$(/app/greet.sh Ada)" = "Hi, Ada!" ] && [ "$(/app/greet.sh Bo)" = "Hi, Bo!" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
