#!/bin/bash
# Reference solution (runs as the task's agent user; jq comes from the Dockerfile).
set -e
echo '{"status": "ready", "id": 7}' | jq -r .status > "$HOME/notes.txt"
