#!/bin/bash
# Grades the task: writes 1 (pass) or 0 (fail) to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if [ -d /app/project/tests ] && [ -d /app/project/docs ] && [ -f /app/project/src/__init__.py ] && [ ! -s /app/project/src/__init__.py ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
