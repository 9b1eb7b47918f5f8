#!/bin/bash
# Grades the task: writes 1 (pass) or 0 (fail) to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if [ -f /app/docs/intro.md ] && [ -f /app/docs/usage.md ] && [ -f /app/docs/faq.md ] && [ -z "$(ls /app/docs/*.txt 2>/dev/null)" ] && [ "$(cat /app/docs/faq.md)" = "faq" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
